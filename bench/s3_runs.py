"""A prediction run over S3 against the same run on local disk, in posters per second.

  local   posters in a folder, --out a folder
  s3      the same posters in a bucket, --out s3://bucket/preds (moto's standalone server on
          loopback: no network latency, so this is the cost of the S3 protocol itself:
          listing, one GET per poster, one PUT per part and per marker)

Both are ``anigenre predict`` in-process (plan: list, hash; then decode, predict, write the
parts, finalise) with the same model, on LiteRT. The model is the test suite's tiny CNN at
40x32, so the network costs almost nothing and the figures show the I/O path, which is
what object storage changes. Run: ``.venv/bin/python bench/s3_runs.py [--n 400]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anigenre.config import load_settings  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from predict import corpus  # noqa: E402

from tests.s3 import s3_server  # noqa: E402
from tests.synthetic import trained_tiny_model  # noqa: E402


def timed_run(settings, inputs, out) -> tuple[float, float, int]:
    """(plan seconds, predict seconds, rows) of one in-process run."""
    start = time.perf_counter()
    plan = stages.plan_prediction(settings, [inputs], model_id="latest", out_dir=out, chunk_size=64)
    planned = time.perf_counter()
    manifest = stages.predict_in_process(settings, plan)
    return planned - start, time.perf_counter() - planned, manifest["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="posters per run")
    parser.add_argument("--shared-dir", type=Path, default=Path("../shared"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, s3_server() as server:
        root = Path(tmp)
        settings, _ = trained_tiny_model(root / "data", args.shared_dir, epochs=1)
        settings = load_settings(
            overrides={
                "data_dir": settings.data_dir,
                "shared_dir": args.shared_dir,
                "cache_dir": root / "cache",
            },
            env=server.env,
        )
        files = corpus(args.shared_dir, root / "posters", args.n)
        bucket = server.new_bucket()
        for f in files:
            bucket.write_bytes(f"posters/{f.name}", f.read_bytes())
        stages.predict_in_process(  # warm-up: the model's first load is in neither figure
            settings,
            stages.plan_prediction(settings, [files[0]], model_id="latest", out_dir=root / "w"),
        )
        figures = {
            "local": timed_run(settings, root / "posters", root / "out"),
            "s3": timed_run(settings, bucket.uri_of("posters"), bucket.uri_of("preds")),
        }
    print(f"{args.n} posters, chunks of 64, LiteRT, tiny CNN 40x32, in-process")
    print(f"{'':6} {'plan s':>8} {'predict s':>10} {'total s':>8} {'posters/s':>10}")
    for name, (plan_s, predict_s, rows) in figures.items():
        total = plan_s + predict_s
        print(f"{name:6} {plan_s:8.2f} {predict_s:10.2f} {total:8.2f} {rows / total:10.1f}")


if __name__ == "__main__":
    main()
