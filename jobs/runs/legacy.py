"""Runs written before bookkeeping left the part folders: moved on first touch.

Such a run kept its plan, markers, lease and run lock in ``predictions/run_id=<id>/``
beside its parts. Whatever touches a run by id (status, list, resume, report, the sweep)
or scans an output dir for live runs first moves those files to ``prediction-runs/<id>/``.
A rename keeps a file's inode, so a run lock still held by an old process stays held.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from anigenre.core.errors import StorageError
from anigenre.jobs.runs.layout import (
    BOOKKEEPING,
    PLAN,
    PLAN_LOCK,
    parts_dir_for,
    predictions_dir,
    run_dir_for,
)


def migrate_run(out_dir: str | Path, run_id: str) -> None:
    """Move run ``run_id``'s bookkeeping out of its part folder; nothing when none is left
    there. The plan moves last: a run dir with a plan has all its markers."""
    old = parts_dir_for(out_dir, run_id)
    present = [n for n in BOOKKEEPING if (old / n).exists()]
    if not present:
        return
    new = run_dir_for(out_dir, run_id)
    try:
        new.mkdir(parents=True, exist_ok=True)
        for name in sorted(present, key=lambda n: n == PLAN):
            with contextlib.suppress(FileNotFoundError):  # another process moved it
                os.replace(old / name, new / name)
    except OSError as exc:
        raise StorageError(
            f"run {run_id} is in the old layout and its files cannot be moved to {new} "
            f"({exc.strerror or exc}); make {out_dir} writable"
        ) from exc


def migrate_out_dir(out_dir: str | Path) -> None:
    """Move every old-layout run's bookkeeping in ``out_dir``, and drop the old planning
    lock file, so the predictions folder holds Parquet parts only."""
    root = predictions_dir(out_dir)
    if not root.is_dir():
        return
    for folder in root.glob("run_id=*"):
        if any((folder / n).exists() for n in BOOKKEEPING):
            migrate_run(out_dir, folder.name.removeprefix("run_id="))
    with contextlib.suppress(OSError):
        (root / PLAN_LOCK).unlink(missing_ok=True)
