"""The runs index: ``<data>/runs/<run_id>.json`` says where each run writes.

A run's files live under its output dir, which can be anywhere (a local folder, an
``s3://`` prefix); the small index entry in the data dir is how ``jobs
status|wait|resume|list`` and the workers find them from a run id alone. The data dir
may be an ``s3://`` prefix too: workers that share nothing but the broker and the bucket
find every run there.

``<data>/runs/active/<run_id>`` marks a run the workers' sweep may have to mend (recorded,
or put on the broker, and not known to be finished). The sweep lists these markers, never
the whole index, so its cost follows the runs at work, not the runs ever made: it drops a
marker once the run is complete, failed or not on the broker, and whatever puts a run on
the broker (jobs.queue.publish) marks it again afterwards. The markers live beside the
index, in the data dir or its bucket, so they survive a Redis that forgets everything.
"""

from __future__ import annotations

import json
from pathlib import Path

from anigenre.core.errors import AnigenreError, ConfigError, DataError
from anigenre.core.storage import S3Options, Store, open_store
from anigenre.jobs.runs.layout import PLAN, run_dir_for, run_folder
from anigenre.jobs.runs.legacy import migrate_run
from anigenre.jobs.runs.plan import RunPlan

RUNS_INDEX = Path("runs")
ACTIVE = "active"  # under the index: one empty-ish object per active run
# Under the index, not a run (no .json suffix): how far the one-time scan of runs recorded
# before the markers existed has got (jobs.queue.sweeper.Sweeper.migrate).
ACTIVE_SCAN = "_active_scan"


def index_home(settings) -> Path | str:
    """Where the runs index lives: the data dir's ``s3://`` URI when it is in a bucket
    (``settings.data_uri``: every machine reads the bucket's index, never its own mirror of
    the data dir), else the data dir."""
    return getattr(settings, "data_uri", None) or settings.data_dir


def _index(data_dir: Path | str, s3: S3Options | None) -> Store:
    return open_store(data_dir, s3).child(str(RUNS_INDEX))


def record_run(data_dir: Path | str, plan: RunPlan, s3: S3Options | None = None) -> None:
    entry = {"run_id": plan.run_id, "out_dir": plan.out_dir, "created": plan.created}
    _index(data_dir, s3).write_bytes(f"{plan.run_id}.json", json.dumps(entry).encode())
    mark_active(data_dir, plan.run_id, s3)


def mark_active(data_dir: Path | str, run_id: str, s3: S3Options | None = None) -> None:
    """Let the workers' sweep watch run ``run_id``. Called after whatever made it active
    (its entry recorded, its chunks published), so a sweep that dropped the marker in
    between sees that change when it looks again (jobs.queue.sweeper)."""
    _index(data_dir, s3).write_bytes(f"{ACTIVE}/{run_id}", run_id.encode())


def mark_finished(data_dir: Path | str, run_id: str, s3: S3Options | None = None) -> None:
    """The sweep has nothing more to do for run ``run_id`` (complete or failed); no error
    when it was not marked."""
    _index(data_dir, s3).delete(f"{ACTIVE}/{run_id}")


def active_runs(data_dir: Path | str, s3: S3Options | None = None) -> list[str]:
    """The runs marked active, oldest first: one listing of the markers (a LIST request
    per thousand on S3), whatever the number of runs in the index."""
    return [f.path for f in _index(data_dir, s3).child(ACTIVE).list_files(recursive=False)]


def read_active_scan(data_dir: Path | str, s3: S3Options | None = None) -> dict | None:
    """How far the scan of runs recorded before the active markers has got (None: it has
    not started); ``{"done": bool, "below": run_id | None}``."""
    try:
        return json.loads(_index(data_dir, s3).read_bytes(ACTIVE_SCAN))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # damaged: scanned again, which only costs requests


def write_active_scan(
    data_dir: Path | str, done: bool, below: str | None, s3: S3Options | None = None
) -> None:
    body = json.dumps({"done": done, "below": below}).encode()
    _index(data_dir, s3).write_bytes(ACTIVE_SCAN, body)


def indexed_out_dir(data_dir: Path | str, run_id: str, s3: S3Options | None = None) -> str:
    """Where run ``run_id`` writes (its output dir), from its small index entry. A local
    run in the old layout has its files moved to their place first (jobs.runs.legacy)."""
    try:
        out_dir = json.loads(_index(data_dir, s3).read_bytes(f"{run_id}.json"))["out_dir"]
    except FileNotFoundError:
        raise ConfigError(f"no run '{run_id}'; 'anigenre jobs list' shows the runs") from None
    if open_store(out_dir, s3).is_local:
        migrate_run(out_dir, run_id)
    return out_dir


def indexed_run_files(data_dir: Path | str, run_id: str, s3: S3Options | None = None) -> Store:
    """Run ``run_id``'s bookkeeping folder, as a Store (no plan is read)."""
    return open_store(indexed_out_dir(data_dir, run_id, s3), s3).child(run_folder(run_id))


def indexed_run_dir(data_dir: Path, run_id: str) -> Path:
    """Run ``run_id``'s bookkeeping folder on a local disk."""
    return run_dir_for(indexed_out_dir(data_dir, run_id), run_id)


def load_plan(
    data_dir: Path | str, run_id: str, s3: S3Options | None = None, files: Store | None = None
) -> RunPlan:
    """The run's plan; a plan that is gone or damaged is a DataError that says which.
    ``files``: the run's folder when the caller has found it already (one read fewer)."""
    files = files or indexed_run_files(data_dir, run_id, s3)
    try:
        return RunPlan(**json.loads(files.read_bytes(PLAN)), s3=s3)
    except FileNotFoundError:
        why = f"{files.uri_of(PLAN)} is gone; was its output folder moved or deleted?"
    except (ValueError, TypeError, AnigenreError) as exc:
        why = f"{files.uri_of(PLAN)} is damaged ({type(exc).__name__}: {exc})"
    raise DataError(f"run {run_id}: unreadable: {why}")


def list_runs(data_dir: Path | str, s3: S3Options | None = None) -> list[str]:
    """Every recorded run id, oldest first (ids sort by creation time): keys only, no
    entry is read. On S3 the listing comes in pages of a thousand keys."""
    index = _index(data_dir, s3)
    return sorted(
        f.path.removesuffix(".json")
        for f in index.list_files(recursive=False)
        if f.path.endswith(".json")
    )
