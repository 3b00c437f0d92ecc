"""The lease of an in-process run: ``_lease.json`` says which process is predicting it.

An in-process run (``anigenre predict``, ``jobs resume`` without a broker) has no queue and
no sweeper behind it: if its process is killed, nothing finishes it. Its lease, refreshed
by a background thread while it runs and removed when it returns, is how ``jobs status``
tells a run in progress from one whose process is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from anigenre.core.errors import AnigenreError
from anigenre.core.storage import Store, open_store
from anigenre.jobs.runs.layout import LEASE

REFRESH_S = 2.0
# Well above REFRESH_S: a busy machine can delay the refresh thread by seconds.
STALE_S = 30.0


@dataclass(frozen=True)
class Lease:
    host: str
    pid: int
    heartbeat: dt.datetime
    stopped: bool = False  # its process left the run unfinished (Ctrl-C, an error)


def _files(run: Store | Path | str) -> Store:
    """The run's bookkeeping folder as a Store (a local path is accepted too)."""
    return run if isinstance(run, Store) else open_store(run)


def write_lease(run: Store | Path, now: dt.datetime | None = None, stopped: bool = False) -> None:
    beat = (now or dt.datetime.now(dt.UTC)).isoformat()
    record = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": beat}
    if stopped:
        record["stopped"] = True
    _files(run).write_bytes(LEASE, json.dumps(record).encode())


def read_lease(run: Store | Path) -> Lease | None:
    try:
        raw = json.loads(_files(run).read_bytes(LEASE))
        heartbeat = dt.datetime.fromisoformat(raw["heartbeat"])
        return Lease(raw["host"], int(raw["pid"]), heartbeat, raw.get("stopped") is True)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # a lease we cannot read holds nothing


def lease_problem(lease: Lease | None, now: dt.datetime | None = None) -> str | None:
    """Why this lease no longer holds its run, or None while its process is alive."""
    if lease is None:
        return "no process holds it"
    who = f"pid {lease.pid} on {lease.host}"
    if lease.stopped:
        return f"its process ({who}) stopped at {lease.heartbeat:%H:%M:%S} UTC"
    if lease.host == socket.gethostname() and not _alive(lease.pid):
        return f"its process ({who}) is gone"
    silent = ((now or dt.datetime.now(dt.UTC)) - lease.heartbeat).total_seconds()
    if silent > STALE_S:
        return f"its process ({who}) has not renewed its lease for {silent:.0f} s"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@contextlib.contextmanager
def hold_lease(run: Store | Path, refresh_s: float = REFRESH_S) -> Iterator[None]:
    """Hold the run's lease for the ``with`` block; removed when the block returns. When
    it raises (Ctrl-C, an error), the run is interrupted: the lease stays, marked stopped,
    so ``jobs status`` says so at once (a missing lease reads as a run just planned for
    STALE_S) and any process may claim the run."""
    files = _files(run)
    write_lease(files)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(refresh_s):
            # A full disk or a bucket that blinks must not kill the prediction.
            with contextlib.suppress(OSError, AnigenreError):
                write_lease(files)

    thread = threading.Thread(target=renew, name="run-lease", daemon=True)
    thread.start()
    returned = False
    try:
        yield
        returned = True
    finally:
        stop.set()
        thread.join()
        if returned:
            files.delete(LEASE)
        else:
            with contextlib.suppress(OSError, AnigenreError):  # the first error is the news
                write_lease(files, stopped=True)
