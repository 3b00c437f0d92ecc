"""Upload-to-genres time of ``anigenre web`` once the model is warm, two ways:

  (a) in the page's process: the bytes of one poster -> decoded -> predicted (PosterModel)
  (b) in headless Chromium against ``anigenre web``: from handing the file to the upload
      box to its top genres being on the screen (upload, rerun, predict, draw)

Run: ``python bench/web.py`` (uses the newest model in --data-dir, training the default
MobileNetV2 one first if there is none, as bench/predict.py does). Target: under 1 s.
Needs /usr/bin/chromium (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from anigenre.jobs import stages  # noqa: E402
from anigenre.jobs.web.posters import predict_upload  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.registry import list_models  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402

import anigenre  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def figures(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return (
        f"{name:<34} median {statistics.median(ms):6.0f} ms   p90 {p90:6.0f} ms   "
        f"max {ms[-1]:6.0f} ms   (n={len(ms)})"
    )


def in_process(settings, model_id: str, posters: list[Path]) -> list[float]:
    # As the page loads it: the settings' engine (LiteRT by default).
    loaded = anigenre.load_model(model_id, settings=settings)
    loaded.warm()
    out = []
    for path in posters:
        data = path.read_bytes()
        start = time.perf_counter()
        predict_upload(loaded, path.name, data)
        out.append(time.perf_counter() - start)
    return out


def in_browser(data_dir: Path, posters: list[Path]) -> list[float]:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anigenre.jobs.cli",
            "--data-dir",
            str(data_dir),
            "web",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("anigenre web did not start") from None
                time.sleep(0.3)
        out = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for i, path in enumerate([posters[0], *posters]):  # the first warms the model
                page.goto(url)  # a fresh session each time: one poster on the page
                uploader = page.get_by_test_id("stFileUploader").locator("input[type=file]")
                uploader.wait_for(state="attached", timeout=180_000)
                start = time.perf_counter()
                uploader.set_input_files(str(path))
                page.get_by_text(f"{path.name}: top genres").wait_for(timeout=60_000)
                if i:
                    out.append(time.perf_counter() - start)
            browser.close()
        return out
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=20, help="posters to upload")
    args = parser.parse_args()
    settings, _, _ = bench_dataset(args)
    if not list_models(args.data_dir):
        stages.train_model(settings, TrainConfig(bootstrap=100))
    manifest = list_models(args.data_dir)[-1]
    posters = sorted((args.shared / "data" / "posters" / "images").iterdir())[: args.n]
    h, w = manifest.input_size
    cpus = os.cpu_count()
    print(f"model {manifest.model_id} ({manifest.backbone}, input {h}x{w}), {cpus} CPUs")
    print(
        figures(
            "(a) decode + predict, in process", in_process(settings, manifest.model_id, posters)
        )
    )
    print(figures("(b) upload to genres, in Chromium", in_browser(args.data_dir, posters)))


if __name__ == "__main__":
    main()
