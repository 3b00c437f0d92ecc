"""Many recorded runs at little cost, and a count of the store operations a call makes.

A finished run, to the index and to the sweep, is its index entry, its queued marker and
its manifest (no plan is read for it). ``seed_finished_runs`` writes those three objects
as ``record_run``, ``mark_queued`` and ``finalize`` lay them out, straight to the disk or
into moto's backend: ten thousand runs in seconds, where planning each would take hours.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from anigenre.core.storage import Store
from anigenre.jobs.runs.index import ACTIVE, RUNS_INDEX
from anigenre.jobs.runs.layout import MANIFEST, QUEUED, run_folder
from anigenre.jobs.runs.plan import run_id_at

Put = Callable[[str, bytes], None]  # (key under a root holding data/ and out/, bytes)
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def local_put(root: Path) -> Put:
    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return put


def seed_finished_runs(
    put: Put, n: int, out_dir: str, *, marked: bool = False, start: dt.datetime = START
) -> list[str]:
    """``n`` complete queued runs under ``data/`` (index) and ``out/`` (their files), one
    a minute from ``start``, all older than a run planned now. ``marked``: their active
    markers are still there (finished since the last sweep). ``out_dir``: how the index
    names ``out/`` (a local path or an s3:// URI)."""
    ids = []
    for i in range(n):
        at = start + dt.timedelta(minutes=i)
        run_id = run_id_at(at)
        ids.append(run_id)
        entry = {"run_id": run_id, "out_dir": out_dir, "created": at.isoformat()}
        put(f"data/{RUNS_INDEX}/{run_id}.json", json.dumps(entry).encode())
        if marked:
            put(f"data/{RUNS_INDEX}/{ACTIVE}/{run_id}", run_id.encode())
        folder = f"out/{run_folder(run_id)}"
        put(f"{folder}/{QUEUED}", json.dumps({"queued_at": at.isoformat()}).encode())
        manifest = {
            "run_id": run_id,
            "model_id": "m",
            "complete": True,
            "rows": 0,
            "ok": 0,
            "error": 0,
            "parts": [],
            "sizes": {},
            "duplicates": [],
            "already_predicted": 0,
            "created": at.isoformat(),
            "finished": (at + dt.timedelta(seconds=30)).isoformat(),
        }
        put(f"{folder}/{MANIFEST}", json.dumps(manifest).encode())
    return ids


OPERATIONS = (
    "exists", "is_file", "read_bytes", "read_table", "list_files", "write_bytes", "delete"
)  # fmt: skip


@contextmanager
def store_operations() -> Iterator[Counter]:
    """Counts the Store calls made inside the block, by name; a call a Store method
    makes on its own (list_files asking is_file) is part of its caller's one."""
    counts: Counter = Counter()
    depth = threading.local()
    originals = {name: getattr(Store, name) for name in OPERATIONS}

    def counted(name, method):
        def call(self, *args, **kwargs):
            outer = not getattr(depth, "n", 0)
            depth.n = getattr(depth, "n", 0) + 1
            try:
                if outer:
                    counts[name] += 1
                return method(self, *args, **kwargs)
            finally:
                depth.n -= 1

        return call

    for name, method in originals.items():
        setattr(Store, name, counted(name, method))
    try:
        yield counts
    finally:
        for name, method in originals.items():
            setattr(Store, name, method)
