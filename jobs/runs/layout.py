"""The names of a run's files under its output dir, in one place."""

from __future__ import annotations

from pathlib import Path

PLAN, MANIFEST, QUEUED, FAILED = "_plan.json", "_manifest.json", "_queued.json", "_failed.json"
# In <out>/predictions/: held while a run is planned or re-planned, so two planners
# never both take a file. Names starting with "_" are skipped by Parquet readers.
PLAN_LOCK = "_plan.lock"
# In a run's folder: held by the process that plans and runs the run in-process.
RUN_LOCK = "_running.lock"
# In a run's folder: the in-process run's lease (jobs.runs.lease) and the sweeper's note
# on chunks it found orphaned or lost (jobs.runs.stalls).
LEASE, STALLED_MARKER = "_lease.json", "_stalled.json"


def predictions_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "predictions"


def run_dir_for(out_dir: str | Path, run_id: str) -> Path:
    return predictions_dir(out_dir) / f"run_id={run_id}"
