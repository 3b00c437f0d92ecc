"""Prediction throughput, four ways, same model, same machine, one run:

  (a) bare ``model.predict`` on pre-decoded batches (the ceiling)
  (b) ``anigenre predict`` in-process: hashing, planning, parallel decode, predict, Parquet
  (c) the same run through one Celery worker on Redis
  (d) the paper's loop: open one image, predict one, repeat

Run: ``make bench-predict``. Targets: (b)/(a) >= 0.85, (c)/(b) >= 0.8, (b)/(d) >= 5.
Also prints the worker's resident memory after each of 20 consecutive chunks.
Inputs: the shared posters plus re-encoded copies (distinct bytes) to reach --n files.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402
from PIL import Image  # noqa: E402

from core.images import decode_image  # noqa: E402
from jobs import stages  # noqa: E402
from jobs.queue.app import worker_argv  # noqa: E402
from jobs.queue.broker import broker_app  # noqa: E402
from jobs.queue.publish import send_chunks  # noqa: E402
from jobs.runs.index import load_plan  # noqa: E402
from models.config import TrainConfig  # noqa: E402
from models.registry import list_models  # noqa: E402


def corpus(shared: Path, dest: Path, n: int) -> list[Path]:
    source = sorted((shared / "data" / "posters" / "images").iterdir())
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        src = source[i % len(source)]
        out = dest / f"{i:04d}{src.suffix if i < len(source) else '.jpg'}"
        if i < len(source):
            shutil.copy(src, out)
        else:  # a re-encoded copy: same picture, different bytes, so not deduplicated
            with Image.open(src) as img:
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="JPEG", quality=85 + i % 10)
            out.write_bytes(buf.getvalue())
        files.append(out)
    return files


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    settings, _, _ = bench_dataset(args, broker_url=args.broker)
    if not list_models(args.data_dir):
        stages.train_model(settings, TrainConfig(bootstrap=100))
    model_id = list_models(args.data_dir)[-1]["model_id"]
    work = Path(tempfile.mkdtemp(prefix="anigenre-bench-"))
    files = corpus(args.shared, work / "in", args.n)
    predictor = stages.load_predictor(settings, model_id)
    size, policy = predictor.size, predictor.policy
    print(
        f"{len(files)} posters, model {model_id} ({predictor.manifest['backbone']}, input {size})"
    )

    # (a) bare model.predict on pre-decoded batches
    arrays = np.stack([decode_image(f.read_bytes(), size, policy) for f in files]).astype(
        np.float32
    )
    predictor.model.predict(arrays[:64], batch_size=32, verbose=0)  # warm-up
    t = time.perf_counter()
    predictor.model.predict(arrays, batch_size=32, verbose=0)
    a = len(files) / (time.perf_counter() - t)

    # (b) in-process pipeline, model already loaded (as a warm worker's is)
    t = time.perf_counter()
    plan = stages.plan_prediction(
        settings, [work / "in"], model_id=model_id, out_dir=work / "b", force=True
    )
    stages.predict_in_process(settings, plan, predictor=predictor)
    b = len(files) / (time.perf_counter() - t)

    # (c) one Celery worker, warmed on a small run first so start-up is not counted
    env = {
        **os.environ,
        "ANIGENRE_DATA_DIR": str(args.data_dir),
        "ANIGENRE_BROKER_URL": args.broker,
    }
    worker = subprocess.Popen(
        worker_argv("predict", "bench", loglevel="WARNING"),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        app = broker_app(settings)
        warm = stages.plan_prediction(
            settings, files[:8], model_id=model_id, out_dir=work / "warm", force=True
        )
        send_chunks(app, warm).get(timeout=300)
        chunk = max(len(files) // 20, 1)
        t = time.perf_counter()
        plan = stages.plan_prediction(
            settings,
            [work / "in"],
            model_id=model_id,
            out_dir=work / "c",
            force=True,
            chunk_size=chunk,
        )
        results = send_chunks(app, plan).get(timeout=1800)
        plan = load_plan(args.data_dir, plan.run_id)
        while not plan.manifest_path.exists():
            time.sleep(0.05)
        c = len(files) / (time.perf_counter() - t)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)

    # (d) the paper's loop
    t = time.perf_counter()
    for f in files:
        with Image.open(f) as img:
            x = np.asarray(img.convert("RGB").resize((size[1], size[0])), dtype=np.float32)[None]
        predictor.model.predict(x, verbose=0)
    d = len(files) / (time.perf_counter() - t)

    print(f"(a) bare model.predict      {a:7.1f} posters/s")
    print(
        f"(b) anigenre predict        {b:7.1f} posters/s   (b)/(a) = {b / a:.2f}  (target >= 0.85)"
    )
    print(
        f"(c) one Celery worker       {c:7.1f} posters/s   (c)/(b) = {c / b:.2f}  (target >= 0.8)"
    )
    print(f"(d) paper's one-by-one loop {d:7.1f} posters/s   (b)/(d) = {b / d:.2f}  (target >= 5)")
    rss = [r["rss_kb"] // 1024 for r in sorted(results, key=lambda r: r["chunk"])]
    print(f"worker RSS (MiB) after each of {len(rss)} chunks: {rss}")
    print(
        f"  first {rss[0]}, last {rss[-1]}, max {max(rss)}; "
        f"growth over the last 10: {rss[-1] - rss[-10]} MiB"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
