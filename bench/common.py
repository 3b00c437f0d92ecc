"""What the model benches share: their two path flags and the shared posters as a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from anigenre.config import Settings, load_settings
from anigenre.jobs import stages

# Every labelled folder under ../shared/data, as the default recipe trains on them.
ALL_FOLDERS = "posters,posters-mal-thumbs,posters-anilist-small"
SMALL_FOLDERS = ("posters-mal-thumbs", "posters-anilist-small")  # 150 px and ~100 px


def small_shas(shared: Path) -> set[str]:
    """The content hashes of the small posters (thumbnails, small covers): benches score
    the full-size test posters apart from them."""
    out: set[str] = set()
    for name in SMALL_FOLDERS:
        labels = shared / "data" / name / "labels.csv"
        if labels.exists():
            out |= set(pd.read_csv(labels)["sha256"])
    return out


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the script's docstring, with ``--shared`` and ``--data-dir``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    return parser


def bench_dataset(args: argparse.Namespace, **overrides):
    """(settings, dataset, vocabulary): the folders of ``args.posters`` under
    ``../shared/data`` (comma-separated; default ``posters``) imported once into the
    bench's data dir and read back on later runs."""
    settings: Settings = load_settings(
        overrides={"data_dir": args.data_dir, "shared_dir": args.shared, **overrides}, env={}
    )
    first, *more = str(getattr(args, "posters", "posters")).split(",")
    dataset, vocab = stages.ensure_dataset(settings, args.shared / "data" / first)
    for name in more:
        folder = args.shared / "data" / name
        wanted = set(pd.read_csv(folder / "labels.csv")["sha256"])
        if not wanted <= set(dataset["sha256"]):  # not imported yet
            stages.import_dataset(settings, folder)
            dataset, vocab = stages.ensure_dataset(settings, folder)
    return settings, dataset, vocab
