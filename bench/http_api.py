"""The HTTP API against the Python API, side by side on the same posters and model:

  (a) ``model.predict([poster_bytes])`` of ``anigenre.load_model``, one poster a call, in
      this process (what a Python service would do without the API)
  (b) ``POST /v1/predict`` of ``anigenre serve``, one poster a request, N requests 8 at a
      time from keep-alive sessions: p50/p99 latency, posters/s, and the server's
      resident memory (VmRSS) once warm and after the requests

Run: ``nice -n 10 python bench/http_api.py`` (uses the newest model in --data-dir, training the
default MobileNetV2 one first if there is none, as bench/web.py does).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on the path, and this file is named
# like the standard library's http package, which requests and urllib import: the
# folder goes last, so that package is found first and bench/common.py still is.
sys.path.append(sys.path.pop(0))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import requests  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.registry import list_models  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402

import anigenre  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - a loopback server of its own, for one run


def percentile(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process(settings, model_id: str, posters: list[bytes]) -> float:
    """Posters per second of model.predict, one poster a call."""
    model = anigenre.load_model(model_id, settings=settings)
    model.warm()
    start = time.perf_counter()
    for data in posters:
        model.predict([data])
    return len(posters) / (time.perf_counter() - start)


def start_server(data_dir: Path, model_id: str) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env["ANIGENRE_API_TOKEN"] = TOKEN
    server = subprocess.Popen(
        [sys.executable, "-m", "anigenre.jobs.cli", "--data-dir", str(data_dir), "serve",
         "--port", str(port), "--model", model_id],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return server, url
        except requests.ConnectionError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("anigenre serve did not start")
        time.sleep(0.3)


def over_http(url: str, posters: list[bytes], concurrency: int) -> tuple[list[float], float]:
    """Each request's seconds, and posters per second over the whole batch."""
    local = threading.local()

    def one(i: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        files = {"file": (f"p{i}.jpg", posters[i], "image/jpeg")}
        start = time.perf_counter()
        answer = session.post(
            f"{url}/v1/predict",
            files=files,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        took = time.perf_counter() - start
        assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "ok"
        return took

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        seconds = list(pool.map(one, range(len(posters))))
    return seconds, len(posters) / (time.perf_counter() - start)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=200, help="predict requests")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    settings, _, _ = bench_dataset(args)
    if not list_models(args.data_dir):
        stages.train_model(settings, TrainConfig(bootstrap=100))
    manifest = list_models(args.data_dir)[-1]
    images = sorted((args.shared / "data" / "posters" / "images").iterdir())
    posters = [images[i % len(images)].read_bytes() for i in range(args.n)]
    h, w = manifest.input_size
    print(
        f"model {manifest.model_id} ({manifest.backbone}, input {h}x{w}, "
        f"{settings.predict_engine}), {os.cpu_count()} CPUs, {args.n} posters"
    )
    server, url = start_server(args.data_dir, manifest.model_id)
    try:
        # Warm the server as the in-process model is warmed: its first requests set up
        # the thread pool and the multipart parser.
        over_http(url, posters[: args.concurrency], args.concurrency)
        before = rss_mib(server.pid)
        seconds, http_rate = over_http(url, posters, args.concurrency)
        after = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    local_rate = in_process(settings, manifest.model_id, posters)
    ms = [s * 1000 for s in seconds]
    print(f"(a) model.predict, one poster a call      {local_rate:7.1f} posters/s")
    print(
        f"(b) POST /v1/predict, {args.concurrency} at a time          {http_rate:7.1f} posters/s"
        f"   p50 {statistics.median(ms):5.0f} ms   p99 {percentile(ms, 0.99):5.0f} ms"
    )
    print(f"    HTTP / in-process: {http_rate / local_rate:.2f}x")
    print(f"    server VmRSS: {before:.0f} MiB warm, {after:.0f} MiB after {args.n} requests")


if __name__ == "__main__":
    main()
