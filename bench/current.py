"""The current view against the history: is computing it on read cheap enough?

Builds a synthetic predictions folder the way runs write one (``prediction_table`` rows,
one zstd Parquet part per chunk of ``--chunk-size`` files under ``run_id=<id>/``):
``--paths`` files predicted by ``--runs`` runs (100,000 rows by default: 50,000 x 2),
18 genre columns, 2% error rows. Then times ``read_predictions(history=True)`` and
``read_predictions()`` (the current view) alternately in this one run, and prints the
median of each and their ratio; the machine may be busy, so compare the ratio, not the
absolute times. Decision rule (issue): within about 2x of the history, the view stays
computed on read; beyond, it would be worth materialising.

Run: ``.venv/bin/python bench/current.py [--paths 50000 --runs 2 --chunk-size 64]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from anigenre.core.current import current_rows
from anigenre.core.genres import Vocabulary
from anigenre.core.predictions import prediction_table
from anigenre.core.storage import open_store
from anigenre.jobs.runs.current import predictions_table, read_predictions
from anigenre.jobs.runs.layout import parts_folder
from anigenre.jobs.runs.plan import run_id_at


def build_folder(out: Path, paths: int, runs: int, chunk_size: int, seed: int = 0) -> int:
    """Write ``runs`` runs over the same ``paths`` files into ``out``; the row count."""
    rng = np.random.default_rng(seed)
    vocab = Vocabulary()
    thresholds = np.full(len(vocab.genres), 0.5)
    store = open_store(out)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rows = 0
    for r in range(runs):
        now = start + dt.timedelta(hours=r)
        run_id = run_id_at(now)
        for c, first in enumerate(range(0, paths, chunk_size)):
            items = []
            for i in range(first, min(first + chunk_size, paths)):
                item: dict = {
                    "path": f"/posters/{i // 1000:03d}/p{i:06d}.jpg",
                    "sha256": f"{i:064x}",
                }
                if rng.random() < 0.02:
                    item["error"] = "invalid: not an image"
                else:
                    item["probs"] = rng.random(len(vocab.genres), dtype=np.float32)
                items.append(item)
            part = prediction_table(
                model_id="bench-model", vocab=vocab, thresholds=thresholds, top_k_n=4,
                items=items, now=now + dt.timedelta(seconds=c),
            )  # fmt: skip
            store.write_table(f"{parts_folder(run_id)}/part-{c:05d}.parquet", part)
            rows += part.num_rows
    return rows


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=64, help="files per part (predict's)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-current-") as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        rows = build_folder(out, args.paths, args.runs, args.chunk_size)
        parts = sum(1 for _ in (out / "predictions").rglob("*.parquet"))
        print(
            f"folder: {rows:,} rows = {args.paths:,} paths x {args.runs} runs, {parts} parts, "
            f"18 genres (built in {time.perf_counter() - t0:.1f} s)"
        )
        read_predictions(out, history=True)  # warm the page cache for both
        history, current = [], []
        for _ in range(args.repeats):  # alternated: a busy moment hits both alike
            history += timed(lambda: read_predictions(out, history=True), 1)
            current += timed(lambda: read_predictions(out), 1)
        table = predictions_table(out, history=True)
        view_only = timed(lambda: current_rows(table), args.repeats)
        kept = len(read_predictions(out))
        h, c, v = (statistics.median(x) for x in (history, current, view_only))
        print(f"read_predictions(history=True): {h * 1000:7.1f} ms  ({len(table):,} rows)")
        print(f"read_predictions() current:     {c * 1000:7.1f} ms  ({kept:,} rows)")
        print(f"  of which current_rows alone:  {v * 1000:7.1f} ms  (Arrow, before pandas)")
        print(f"ratio current / history: {c / h:.2f}x  (median of {args.repeats})")


if __name__ == "__main__":
    main()
