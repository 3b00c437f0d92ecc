"""Which runs are alive, and the lock that makes planning exactly-once.

A run is alive until it is complete or failed while either it is queued on the broker
(its workers and their sweeper finish it), or some process holds it: the ``predict``
that planned it and runs it here, a ``jobs resume`` of it, a ``jobs submit`` until its
chunks are queued. A killed ``predict`` leaves no lasting claim, so a re-run may take its
unfinished files over.

Planning happens under one lock per output dir (:func:`planning`), and a run is held
before that lock is let go, so a second planner always sees the first run alive.

In a local output dir both are flocks, which the kernel drops when their process dies.
Object storage has no locks and is shared between machines: there the planning lock is
passed in (the broker's, jobs.queue.locks, or one local to the machine), and a run is
held by its lease (jobs.runs.lease), which goes stale once its process stops renewing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO

from anigenre.core.storage import Store
from anigenre.jobs.runs.layout import FAILED, MANIFEST, PLAN, PLAN_LOCK, QUEUED, RUN_LOCK, RUNS
from anigenre.jobs.runs.lease import lease_problem, read_lease, write_lease
from anigenre.jobs.runs.legacy import migrate_out_dir
from anigenre.jobs.runs.planfile import stored_inputs

PlanningLock = Callable[[], AbstractContextManager]

_held: dict[str, IO | None] = {}  # run folder's URI -> its locked file (None: a lease)


@contextlib.contextmanager
def planning(out: Store, lock: PlanningLock | None = None) -> Iterator[None]:
    """Exclusive over the output dir while inputs are claimed. Blocks: it is held for
    the reads of the existing rows and the plan's write, not for the hashing."""
    if not out.is_local:
        if lock is None:
            raise ValueError(f"planning into {out.uri} needs a lock shared by all planners")
        with lock():
            yield
        return
    folder = out.local_path(RUNS)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / PLAN_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        migrate_out_dir(out.local_path())  # old-layout runs must be seen where we look
        yield


def hold(files: Store) -> bool:
    """Hold the run whose bookkeeping is ``files`` for this process (until
    :func:`release` or exit); False when another process holds it. Call it inside
    :func:`planning`."""
    key = files.uri
    if key in _held:
        return True
    if not files.is_local:
        lease = read_lease(files)
        mine = lease is not None and (lease.host, lease.pid) == (socket.gethostname(), os.getpid())
        if lease is not None and not mine and lease_problem(lease) is None:
            return False
        write_lease(files)  # fresh for a while: long enough to start running or queueing
        _held[key] = None
        return True
    run_dir = files.local_path()
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / RUN_LOCK, "a")  # noqa: SIM115 - held open until release()
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return False
    _held[key] = fh
    return True


def release(files: Store) -> None:
    fh = _held.pop(files.uri, None)
    if fh is not None:
        fh.close()


def _held_elsewhere(files: Store) -> bool:
    """Whether some process, this one included, holds the run. Probing a local run's
    lock takes it for an instant, so call it inside :func:`planning` as well."""
    if files.uri in _held:
        return True
    if not files.is_local:
        return lease_problem(read_lease(files)) is None
    try:
        fh = open(files.local_path(RUN_LOCK), "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def is_live(files: Store) -> bool:
    if files.exists(MANIFEST) or files.exists(FAILED):
        return False
    return files.exists(QUEUED) or _held_elsewhere(files)


def live_inputs(out: Store, model_id: str, exclude: str | None = None) -> dict[str, str]:
    """Input path -> run id, for every live run of ``model_id`` in ``out`` but ``exclude``."""
    owners: dict[str, str] = {}
    runs = out.child(RUNS)
    run_ids = sorted({f.path.split("/")[0] for f in runs.list_files() if "/" in f.path})
    for run_id in run_ids:
        files = runs.child(run_id)
        if run_id == exclude or not files.exists(PLAN) or not is_live(files):
            continue
        try:
            plan = json.loads(files.read_bytes(PLAN))
        except (OSError, ValueError):
            continue  # a run without a readable plan claims nothing
        if plan.get("model_id") == model_id:
            try:  # the chunk manifests, one at a time (jobs.runs.planfile)
                owners.update((entry["path"], run_id) for entry in stored_inputs(files, plan))
            except (OSError, ValueError):
                continue  # a plan whose manifests are gone claims what was read

    return owners
