"""The workers' sweep and the runs list against the size of the runs index (issue 21).

Every predict worker sweeps every 30 s (a Redis lock lets one act per interval), so the
store requests of one sweep, twice a minute, are what an index of many finished runs
costs while nothing else happens. Measured side by side in one process:

  before   the sweep as it was: it looked at every run in the index (its entry, then
           its queued, manifest and failed markers) to find the few it must watch
  after    the sweep over the active markers only (jobs.runs.index.active_runs); the
           one-time scan of runs recorded before the markers, SCAN_BATCH a sweep, is
           counted apart ("scan")
  list     'jobs list' (the newest 20) against the old default of reading every run

on local disk (Store operations: each is a stat, read, listing, write or delete) and on
S3 (moto's server in this process, on loopback: HTTP requests, by method). The index
holds N finished runs (synthetic: entry, queued marker, manifest, as the code writes
them) and ``--active`` queued runs with unfinished chunks (planned for real). A backlog
of one message keeps the lost-chunk check waiting, so every sweep does the same work.

Run: ``nice -n 10 .venv/bin/python bench/scale_sweeper.py [--sizes 100,1000,10000]
[--s3-sizes 100,1000,10000] [--active 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# The repository, not bench/, on the path: a bench module named like a standard one
# (bench/http.py did once) must not shadow it here.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from anigenre.config import load_settings  # noqa: E402
from anigenre.core.errors import ConfigError, DataError, StorageError  # noqa: E402
from anigenre.jobs.queue import sweeper as sweeping  # noqa: E402
from anigenre.jobs.queue.sweeper import LOCK_KEY, PREDICT_QUEUE, Sweeper  # noqa: E402
from anigenre.jobs.runs.index import (  # noqa: E402
    active_runs,
    indexed_run_files,
    list_runs,
    load_plan,
    mark_active,
    mark_finished,
    record_run,
)
from anigenre.jobs.runs.layout import FAILED, MANIFEST, QUEUED  # noqa: E402
from anigenre.jobs.runs.markers import mark_queued  # noqa: E402
from anigenre.jobs.runs.plan import plan_run  # noqa: E402
from anigenre.jobs.service import runs  # noqa: E402

from tests.procs import own_redis  # noqa: E402
from tests.run_records import local_put, seed_finished_runs, store_operations  # noqa: E402
from tests.s3_counting import CountingS3  # noqa: E402
from tests.synthetic import poster_folder  # noqa: E402

SWEEPS_PER_MINUTE = 2  # ANIGENRE_SWEEP_INTERVAL_S's default, 30 s


def old_watched_runs(data_dir, s3=None):
    """The sweep's way of finding its runs before the active markers (commit aece422)."""
    for run_id in list_runs(data_dir, s3):
        try:
            files = indexed_run_files(data_dir, run_id, s3)
            if files.exists(QUEUED) and not (files.exists(MANIFEST) or files.exists(FAILED)):
                yield load_plan(data_dir, run_id, s3)
        except (OSError, ValueError, ConfigError, DataError, StorageError):
            continue


class LocalCounter:
    """Store operations on local disk."""

    name = "local"

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    @contextlib.contextmanager
    def counting(self):
        with store_operations() as ops:
            yield
        self.counts = Counter(ops)


class S3Counter:
    """HTTP requests moto answers."""

    name = "s3"

    def __init__(self, server: CountingS3) -> None:
        self.server = server
        self.counts: Counter = Counter()

    @contextlib.contextmanager
    def counting(self):
        self.server.reset()
        yield
        self.counts = Counter(self.server.counts)


def measure(counter, call) -> tuple[int, dict, float]:
    start = time.perf_counter()
    with counter.counting():
        call()
    return sum(counter.counts.values()), dict(counter.counts), time.perf_counter() - start


def one_size(backend: str, n: int, active: int, client, server, root: Path) -> dict:
    if backend == "s3":
        bucket = server.new_bucket()
        data, out, s3 = f"s3://{bucket}/data", f"s3://{bucket}/out", server.options
        put, counter = server.put_into(bucket), S3Counter(server)
        env = server.env
    else:
        data, out, s3 = str(root / "data"), str(root / "out"), None
        put, counter, env = local_put(root), LocalCounter(), {}
    seed_finished_runs(put, n, out)  # finished and swept: no markers left
    for i in range(active):  # queued, chunks unwritten: the sweep's real work
        folder = poster_folder(root / f"in{i}", 2, 9000 + 10 * i)
        plan = plan_run([folder], model_id="m", out_dir=out, chunk_size=1, s3=s3,
                        lock=contextlib.nullcontext)  # one planner here  # fmt: skip
        record_run(data, plan, s3)
        mark_queued(plan)
        mark_active(data, plan.run_id, s3)
    client.flushdb()
    client.rpush(PREDICT_QUEUE, "backlog")  # the lost-chunk check waits: sweeps stay alike
    sweeper = Sweeper(client, data, lambda p, c: None, interval_s=30, max_resends=3,
                      heartbeat_s=5, s3=s3)  # fmt: skip

    def sweep():
        client.delete(LOCK_KEY)
        return sweeper.sweep()

    row = {"backend": backend, "runs": n}
    scan_total, scans = 0, 0
    while not sweeper.migrated:  # the one-time scan of an index without markers
        total, _, _ = measure(counter, sweep)
        scan_total, scans = scan_total + total, scans + 1
    row["scan"] = (scan_total, scans)
    row["after"] = measure(counter, sweep)
    real = sweeping.watched_runs
    sweeping.watched_runs = old_watched_runs
    try:
        row["before"] = measure(counter, sweep)
    finally:
        sweeping.watched_runs = real
    settings = load_settings(overrides={"data_dir": data}, env=env)
    if n <= 1000 or backend == "local":
        row["list_all"] = measure(counter, lambda: runs.runs_page(settings, None))
    row["list_20"] = measure(counter, lambda: runs.runs_page(settings, 20))
    for run_id in active_runs(data, s3):  # every run finished: the sweep's floor
        mark_finished(data, run_id, s3)
    row["idle"] = measure(counter, sweep)
    return row


def show(row: dict) -> None:
    def fig(key):
        total, by, seconds = row[key]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
        return f"{total:>6} ({kinds}; {seconds:.2f} s)"

    before, after = row["before"][0], row["after"][0]
    unit = "HTTP requests" if row["backend"] == "s3" else "store operations"
    print(f"\n{row['backend']}, {row['runs']} finished runs in the index ({unit}):")
    print(f"  sweep before    {fig('before')}  = {before * SWEEPS_PER_MINUTE}/min")
    print(f"  sweep after     {fig('after')}  = {after * SWEEPS_PER_MINUTE}/min")
    print(f"  before / after  {before / after:.1f}x")
    print(f"  after, no run active {fig('idle')}")
    total, scans = row["scan"]
    print(f"  one-time scan   {total:>6} over {scans} sweep(s), once per index")
    if "list_all" in row:
        print(f"  list, every run {fig('list_all')}")
    print(f"  list, newest 20 {fig('list_20')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="local disk")
    parser.add_argument("--s3-sizes", default="100,1000,10000", help="moto S3")
    parser.add_argument("--active", type=int, default=5, help="queued, unfinished runs")
    args = parser.parse_args()
    plan = [("local", int(n)) for n in args.sizes.split(",") if n] + [
        ("s3", int(n)) for n in args.s3_sizes.split(",") if n
    ]  # 'list, every run' is left out on S3 past 1,000 runs: minutes, and linear
    server = CountingS3().start()
    try:
        with tempfile.TemporaryDirectory() as tmp, own_redis(Path(tmp) / "redis") as (_, client):
            print(f"{args.active} active runs (queued, 2 chunks unwritten) in every index")
            for i, (backend, n) in enumerate(plan):
                show(one_size(backend, n, args.active, client, server, Path(tmp) / str(i)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
