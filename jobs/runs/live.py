"""Which runs are alive, told by locks that the kernel drops when their process dies.

A run is alive until it is complete or failed while either it is queued on the broker
(its workers and their sweeper finish it), or some process holds its run lock: the
``predict`` that planned it and runs it here, a ``jobs resume`` of it, a ``jobs submit``
until its chunks are queued. A killed ``predict`` leaves no stale claim: its run stops
being alive the moment it dies, so a re-run may take its unfinished files over.

Planning happens under one lock per output dir (:func:`planning`), and a run's lock is
taken before that lock is let go, so a second planner always sees the first run alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jobs.runs.layout import FAILED, MANIFEST, PLAN, PLAN_LOCK, QUEUED, RUN_LOCK, runs_dir
from jobs.runs.legacy import migrate_out_dir

_held: dict[str, IO] = {}  # run dir -> its locked lock file, for the runs this process holds


@contextlib.contextmanager
def planning(out_dir: str | Path) -> Iterator[None]:
    """Exclusive over the output dir while inputs are claimed. Blocks: it is held for
    the reads of the existing rows and the plan's write, not for the hashing."""
    folder = runs_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / PLAN_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        migrate_out_dir(out_dir)  # old-layout runs must be seen where live_inputs looks
        yield


def hold(run_dir: Path) -> bool:
    """Take ``run_dir``'s run lock for this process (kept until :func:`release` or exit);
    False when another process holds it. Call it inside :func:`planning`."""
    key = str(run_dir)
    if key in _held:
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / RUN_LOCK, "a")  # noqa: SIM115 - held open until release()
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return False
    _held[key] = fh
    return True


def release(run_dir: Path) -> None:
    fh = _held.pop(str(run_dir), None)
    if fh is not None:
        fh.close()


def _locked(run_dir: Path) -> bool:
    """Whether some process, this one included, holds ``run_dir``'s run lock. Probing
    takes the lock for an instant, so call it inside :func:`planning` as well."""
    if str(run_dir) in _held:
        return True
    try:
        fh = open(run_dir / RUN_LOCK, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def is_live(run_dir: Path) -> bool:
    if (run_dir / MANIFEST).exists() or (run_dir / FAILED).exists():
        return False
    return (run_dir / QUEUED).exists() or _locked(run_dir)


def live_inputs(out_dir: str | Path, model_id: str, exclude: str | None = None) -> dict[str, str]:
    """Input path -> run id, for every live run of ``model_id`` in ``out_dir`` but ``exclude``."""
    owners: dict[str, str] = {}
    root = runs_dir(out_dir)
    for run_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        run_id = run_dir.name
        if run_id == exclude or not is_live(run_dir):
            continue
        try:
            plan = json.loads((run_dir / PLAN).read_text())
        except (OSError, ValueError):
            continue  # a run dir without a readable plan claims nothing
        if plan.get("model_id") == model_id:
            owners.update((entry["path"], run_id) for entry in plan["inputs"])
    return owners
