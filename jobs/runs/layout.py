"""The names of a run's files under its output dir, in one place.

Two trees: ``predictions/run_id=<id>/`` holds the run's Parquet parts and nothing else,
so any Parquet reader can take the folder as one hive-partitioned table while runs are
written into it (Polars refuses a folder with any other file in it, a half-written part's
temp file included); ``prediction-runs/<id>/`` holds the run's bookkeeping beside it.
"""

from __future__ import annotations

from pathlib import Path

PLAN, MANIFEST, QUEUED, FAILED = "_plan.json", "_manifest.json", "_queued.json", "_failed.json"
# In a run's folder, beside the plan's header (jobs.runs.planfile): one manifest per
# chunk, and the byte-identical copies.
# "_": pyarrow and pandas skip it when a user reads the whole output folder as Parquet.
CHUNKS, DUPLICATES = "_chunks", "_duplicates.json"
# In prediction-runs/: held while a run is planned or re-planned, so two planners
# never both take a file.
PLAN_LOCK = "_plan.lock"
# In a run's folder: held by the process that plans and runs the run in-process.
RUN_LOCK = "_running.lock"
# In a run's folder: the in-process run's lease (jobs.runs.lease) and the sweeper's note
# on chunks it found orphaned or lost (jobs.runs.stalls).
LEASE, STALLED_MARKER = "_lease.json", "_stalled.json"
# Every bookkeeping file; runs written before the two trees kept them in the part folder.
BOOKKEEPING = (PLAN, QUEUED, FAILED, STALLED_MARKER, LEASE, RUN_LOCK, MANIFEST)


# The two trees, relative to the output dir (a local folder or an s3:// prefix).
PREDICTIONS, RUNS = "predictions", "prediction-runs"


def parts_folder(run_id: str) -> str:
    return f"{PREDICTIONS}/run_id={run_id}"


def run_folder(run_id: str) -> str:
    return f"{RUNS}/{run_id}"


def predictions_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / PREDICTIONS


def runs_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / RUNS


def run_dir_for(out_dir: str | Path, run_id: str) -> Path:
    """The run's bookkeeping: plan, markers, locks, and parts' temp files while written."""
    return runs_dir(out_dir) / run_id


def parts_dir_for(out_dir: str | Path, run_id: str) -> Path:
    """The run's partition of the predictions table: ``part-<chunk>.parquet`` only."""
    return predictions_dir(out_dir) / f"run_id={run_id}"
