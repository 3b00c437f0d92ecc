"""Runs of a million posters (issue 21): bookkeeping that does not grow with the run.

  bookkeeping  what a chunk's task does besides predicting (find the run, read its plan,
               look for its part, read its inputs, learn whether the run is complete),
               timed on synthetic runs of 10,000, 100,000 and 1,000,000 inputs in chunks of
               64 on local disk, and on moto's S3 server up to 100,000 with the storage
               requests counted; beside it the same steps as they were before (one
               _plan.json listing every input, and a listing of the parts per chunk)
  planning     plan_run's time and peak resident memory (a process per size): real small
               files at 10,000 and 100,000, and a synthetic reader (no file system: names
               and bytes made up, the same planning code) at 10,000 to 1,000,000
  e2e          5,000 against 500 small posters in chunks of one file through one real
               worker (its own redis-server on a free port, the test suite's tiny CNN):
               the bookkeeping shows, since each chunk predicts one poster
  sweeper      bench/scale_sweeper.py's figures, when that bench is there

Run: ``nice -n 10 .venv/bin/python bench/scale.py [--only bookkeeping,planning,e2e]
[--sizes 10000,100000,1000000] [--s3-max 100000]``. Prints one table per part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
# The repository root instead of bench/ (a script's own folder comes first on the path):
# a bench module named like a standard one (http, say) must not shadow it here.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

import pyarrow.fs as pafs  # noqa: E402
from anigenre.core.storage import S3Options  # noqa: E402
from anigenre.jobs.queue import counter  # noqa: E402
from anigenre.jobs.runs import plan as planning  # noqa: E402
from anigenre.jobs.runs.index import load_plan, record_run  # noqa: E402
from anigenre.jobs.runs.layout import PLAN, parts_folder  # noqa: E402
from anigenre.jobs.runs.parts import all_written, chunk_done  # noqa: E402
from anigenre.jobs.runs.plan import RunPlan, run_id_at  # noqa: E402

from tests.procs import RedisServer  # noqa: E402

CHUNK = 64
SAMPLES = 25  # chunks timed per run, spread over it
REPEATS = 3  # times each


# --- storage requests, counted -------------------------------------------------------------


class Counting(pafs.FileSystemHandler):
    """pyarrow's S3 filesystem with every call counted: each is one request or more (a
    listing: one per thousand keys, counted here as one call)."""

    def __init__(self, fs: pafs.FileSystem) -> None:
        self.fs, self.calls = fs, 0

    def _n(self):
        self.calls += 1
        return self.fs

    def get_type_name(self):
        return "counting-" + self.fs.type_name

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self._n().get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._n().get_file_info(selector)

    def create_dir(self, path, recursive):
        return self._n().create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        return self._n().delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        return self._n().delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        return self._n().delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        return self._n().delete_file(path)

    def move(self, src, dest):
        return self._n().move(src, dest)

    def copy_file(self, src, dest):
        return self._n().copy_file(src, dest)

    def open_input_stream(self, path):
        return self._n().open_input_stream(path)

    def open_input_file(self, path):
        return self._n().open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self._n().open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self._n().open_append_stream(path, metadata=metadata)

    def equals(self, other):
        return self is other


COUNTER: Counting | None = None


def counted_s3() -> None:
    """Every Store opened on S3 from here on goes through one Counting handler."""
    real = S3Options.filesystem

    def filesystem(self):
        global COUNTER
        if COUNTER is None:
            COUNTER = Counting(real(self))
        return pafs.PyFileSystem(COUNTER)

    S3Options.filesystem = filesystem


def requests() -> int:
    return COUNTER.calls if COUNTER else 0


# --- synthetic runs ----------------------------------------------------------------------


def entry(k: int) -> dict:
    return {
        "path": f"/posters/{k // 1000:04d}/{k:07d}.png",
        "size": 4000 + k % 977,
        "sha256": hashlib.sha256(k.to_bytes(8, "big")).hexdigest(),
    }


def synthetic_run(data, out, n: int, s3: S3Options | None, legacy: bool, skip: set[int]):
    """A recorded run of ``n`` inputs in chunks of CHUNK: this format (header + chunk
    manifests), or the old one (one _plan.json with every input), with a part for every
    chunk but those in ``skip`` (a run under way: what the old listing per chunk saw)."""
    created = dt.datetime.now(dt.UTC)
    chunks = (n + CHUNK - 1) // CHUNK
    plan = RunPlan(
        run_id=run_id_at(created),
        model_id="m",
        out_dir=out if isinstance(out, str) else str(out),
        created=created.isoformat(),
        top_k=4,
        chunk_size=CHUNK,
        n_inputs=n,
        n_chunks=chunks,
        n_duplicates=0,
        odd_sizes={str(chunks - 1): n - (chunks - 1) * CHUNK} if n % CHUNK else {},
        s3=s3,
    )
    files = plan.files
    if legacy:
        bounds = [[i * CHUNK, min(n, (i + 1) * CHUNK)] for i in range(chunks)]
        head = {k: v for k, v in plan.header().items() if not k.startswith(("n_", "odd"))}
        body = json.dumps({**head, "chunks": bounds, "duplicates": []})[:-1]
        text = body + ', "inputs": [' + ", ".join(json.dumps(entry(k)) for k in range(n)) + "]}"
        files.write_bytes(PLAN, text.encode())
        del text
    else:
        planning.write_chunks(
            files,
            (
                (i, [entry(k) for k in range(i * CHUNK, min(n, (i + 1) * CHUNK))])
                for i in range(chunks)
            ),
        )
        files.write_bytes(PLAN, json.dumps(plan.header()).encode())
    empty = b""  # the listing reads names only; no sampled chunk has a part
    if legacy:
        parts = plan.out.child(parts_folder(plan.run_id))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: parts.write_bytes(plan.part_name(i), empty),
                    (i for i in range(chunks) if i not in skip),
                )
            )
    record_run(data, plan, s3)
    return plan.run_id, chunks


def chunk_bookkeeping(data, run_id: str, index: int, s3, client, legacy: bool) -> None:
    """A chunk task's steps but the prediction and the part's write (jobs.queue.tasks).
    Counting a chunk again is what a redelivery does: the same requests and time."""
    plan = load_plan(data, run_id, s3)
    chunk_done(plan, index)
    plan.chunk_entries(index)
    if legacy:
        all_written(plan)  # what every chunk did before the count
    else:
        counter.chunk_written(client, run_id, index)


def bookkeeping(sizes: list[int], s3_max: int, tmp: Path, client) -> list[dict]:
    """Every run of a place built first, then timed in turns (a chunk of each run, then
    the next chunk of each), so that a shared machine's changing load falls on all the
    sizes alike."""
    rows = []
    server = None
    for where in ("local", "s3"):
        if where == "s3":
            from tests.s3 import S3Server

            server = S3Server().start()
            counted_s3()
        runs = []
        for n in sizes:
            if where == "s3" and n > s3_max:
                continue
            chunks = (n + CHUNK - 1) // CHUNK
            sample = sorted({round(i * (chunks - 1) / (SAMPLES - 1)) for i in range(SAMPLES)})
            for legacy in (False, True):
                if legacy and n > 100_000 and where == "local" and "--legacy-1m" not in sys.argv:
                    continue  # 140 MB of JSON per chunk: the issue measured it (0.7 s)
                if where == "s3":
                    bucket = server.new_bucket()
                    data, out, s3 = bucket.uri_of("data"), bucket.uri_of("out"), server.options
                else:
                    base = Path(tempfile.mkdtemp(dir=tmp))
                    data, out, s3 = base / "data", base / "out", None
                built = time.perf_counter()
                run_id, _ = synthetic_run(data, out, n, s3, legacy, set(sample))
                built = time.perf_counter() - built
                chunk_bookkeeping(data, run_id, sample[0], s3, client, legacy)  # warm
                row = {
                    "where": where,
                    "inputs": n,
                    "chunks": chunks,
                    "plan": "old: one _plan.json" if legacy else "header + manifests",
                    "setup_s": round(built, 1),
                }
                runs.append((row, data, run_id, s3, legacy, sample, [], []))
        for k in range(SAMPLES):
            for _row, data, run_id, s3, legacy, sample, times, reqs in runs:
                if k >= len(sample):
                    continue
                tries = []
                for _ in range(REPEATS):  # the least of a few: a shared CPU's noise out
                    before = requests()
                    start = time.perf_counter()
                    chunk_bookkeeping(data, run_id, sample[k], s3, client, legacy)
                    tries.append(time.perf_counter() - start)
                    reqs.append(requests() - before)
                times.append(min(tries))
        for row, *_rest, times, reqs in runs:
            row["ms_per_chunk"] = round(statistics.median(times) * 1000, 2)
            row["requests_per_chunk"] = statistics.median(reqs) if where == "s3" else None
            rows.append(row)
            print(json.dumps(row), flush=True)
        new = {
            r["inputs"]: r["ms_per_chunk"]
            for r in rows
            if r["where"] == where and "header" in r["plan"]
        }
        if len(new) > 1:
            low, high = min(new), max(new)
            print(
                f"{where}: per-chunk bookkeeping at {high:,} inputs is "
                f"{new[high] / new[low]:.2f}x that at {low:,} (target <= 2x)",
                flush=True,
            )
    if server is not None:
        server.stop()
    return rows


# --- planning ------------------------------------------------------------------------------


def real_files(folder: Path, n: int) -> Path:
    """``n`` small distinct files with an image's name, a thousand per folder (not
    images: planning only hashes them), and a copy of every thousandth."""
    if (folder / "done").exists():
        return folder
    for k in range(n):
        sub = folder / f"{k // 1000:04d}"
        if k % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{k:07d}.png").write_bytes(k.to_bytes(8, "big") * 8)
        if k % 1000 == 999:
            (sub / f"copy-{k:07d}.png").write_bytes(k.to_bytes(8, "big") * 8)
    (folder / "done").write_text("")
    return folder


def plan_child(args) -> None:
    """In its own process, so that its peak resident size is its own."""
    baseline = _rss_kb("VmRSS")
    if args.mode == "synthetic":

        def discover(paths, s3=None):
            return (f"/synthetic/{k // 1000:04d}/{k:07d}.png" for k in range(args.n))

        planning.iter_discover = discover
        planning.InputReader.__call__ = lambda self, path: path.encode() * 2
        inputs = ["/synthetic"]
    else:
        inputs = [Path(args.folder)]
    start = time.perf_counter()
    plan = planning.plan_run(inputs, model_id="m", out_dir=Path(args.out), chunk_size=CHUNK)
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries a parent's peak into ru_maxrss across exec.
    peak = _rss_kb("VmHWM")
    print(
        json.dumps(
            {
                "mode": args.mode,
                "inputs": len(plan.inputs),
                "chunks": len(plan.chunks),
                "copies": len(plan.duplicates),
                "plan_s": round(seconds, 1),
                "peak_rss_mb": round(peak / 1024),
                "before_planning_mb": round(baseline / 1024),
            }
        )
    )


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def planning_bench(sizes: list[int], real_max: int, tmp: Path) -> list[dict]:
    rows = []
    for mode in ("real", "synthetic"):
        for n in sizes:
            if mode == "real" and n > real_max:
                continue
            folder = real_files(tmp / f"files-{n}", n) if mode == "real" else tmp
            out = Path(tempfile.mkdtemp(dir=tmp))
            cmd = [sys.executable, __file__, "--plan-child", str(n), "--mode", mode]
            cmd += ["--folder", str(folder), "--out", str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                continue
            row = {**json.loads(done.stdout.strip().splitlines()[-1]), "requested": n}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# --- end to end ----------------------------------------------------------------------------


def e2e(tmp: Path, small: int, large: int, shared: Path, redis_url: str) -> list[dict]:
    from anigenre.config import load_settings
    from anigenre.jobs.service import runs
    from anigenre.jobs.service.wiring import dispatcher_for

    from tests.procs import Worker
    from tests.synthetic import poster_folder, trained_tiny_model

    settings, model_id = trained_tiny_model(tmp / "data", shared, epochs=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env.update(ANIGENRE_DATA_DIR=str(settings.data_dir), ANIGENRE_BROKER_URL=redis_url)
    settings = load_settings(
        overrides={"data_dir": settings.data_dir, "broker_url": redis_url, "shared_dir": shared},
        env={},
    )
    worker = Worker("scale", env, tmp / "worker.log").start()
    rows = []
    try:
        # The small run again after the large one: on a shared machine the load moves, and
        # the ratio is taken against the mean of the two small runs around it.
        for n in (small, large, small):
            folder = poster_folder(tmp / f"posters-{n}-{len(rows)}", n, seed=10_000 * len(rows))
            done = runs.submit(
                settings,
                [folder],
                dispatcher_for(settings),
                model=model_id,
                out=tmp / f"out-{len(rows)}",
                chunk_size=1,
            )
            plan = done.plan
            start = time.perf_counter()
            while not plan.files.exists("_manifest.json"):  # the finaliser's doing
                time.sleep(0.2)
            seconds = time.perf_counter() - start
            row = {"posters": n, "chunks": len(plan.chunks), "seconds": round(seconds, 1)}
            row["posters_per_s"] = round(n / seconds, 1)
            row.update(task_times(tmp / "worker.log", plan.run_id))
            row["load_avg"] = round(os.getloadavg()[0], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        worker.stop()
    if len(rows) == 3:
        ratio = rows[1]["posters_per_s"] / statistics.mean(
            [rows[0]["posters_per_s"], rows[2]["posters_per_s"]]
        )
        print(f"e2e: {large} chunks run at {ratio:.2f}x the rate of {small} (target >= 0.8x)")
    return rows


def task_times(log: Path, run_id: str) -> dict:
    """The worker's own time per task of the run (its log's "succeeded in"), in ms: the
    median of its first and last tenth of chunks, and the slowest (the finaliser's)."""
    pattern = re.compile(r"succeeded in ([0-9.e-]+)s: \{'run_id': '" + re.escape(run_id))
    took = [float(m.group(1)) * 1000 for m in map(pattern.search, log.open()) if m]
    if len(took) < 10:
        return {}
    tenth = len(took) // 10
    return {
        "task_ms_first": round(statistics.median(took[:tenth]), 1),
        "task_ms_last": round(statistics.median(took[-tenth:-1]), 1),
        "task_ms_max": round(max(took)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="bookkeeping,planning,e2e,sweeper")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--s3-max", type=int, default=100_000)
    parser.add_argument("--real-max", type=int, default=100_000)
    parser.add_argument("--e2e", default="500,5000", help="small,large posters")
    parser.add_argument("--shared-dir", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--legacy-1m", action="store_true", help="the old plan at 1M too")
    parser.add_argument("--plan-child", type=int)  # internal: one planning run
    parser.add_argument("--mode")
    parser.add_argument("--folder")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.plan_child:
        args.n = args.plan_child
        plan_child(args)
        return
    only = set(args.only.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="anigenre-scale-") as name:
        tmp = Path(name)
        server = RedisServer(tmp / "redis").start()
        client = __import__("redis").Redis.from_url(server.url)
        try:
            if "bookkeeping" in only:
                print("# per-chunk bookkeeping: median over chunks across the run, least of 3 each")
                bookkeeping(sizes, args.s3_max, tmp, client)
            if "planning" in only:
                print("# planning: time and peak resident memory, one process per size")
                planning_bench(sizes, args.real_max, tmp)
            if "e2e" in only:
                print("# end to end: chunks of one file through one worker")
                small, large = (int(x) for x in args.e2e.split(","))
                e2e(tmp, small, large, args.shared_dir, server.url)
        finally:
            server.kill()
    sweeper = ROOT / "bench" / "scale_sweeper.py"
    if "sweeper" in only and sweeper.exists():
        print("# the sweep (bench/scale_sweeper.py)", flush=True)
        subprocess.run([sys.executable, str(sweeper)], check=False)


if __name__ == "__main__":
    main()
