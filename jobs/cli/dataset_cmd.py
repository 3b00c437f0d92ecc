"""``anigenre preprocess`` and ``anigenre dataset import|stats``: building the labelled dataset."""

from __future__ import annotations

import argparse

from anigenre.config import Settings
from anigenre.jobs import stages
from anigenre.jobs.cli import args as types

_SHOW_SKIPPED = 10


def register(sub) -> None:
    p = sub.add_parser("preprocess", help="scraped tables -> processed/dataset.parquet")
    p.add_argument("--years", type=types.year_range, help="keep titles of these years")
    p.add_argument("--require-score", action="store_true", help="drop titles without a score")
    p.add_argument(
        "--require-studio", action="store_true", help="drop titles without a main studio"
    )
    p.add_argument(
        "--require-genres",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="drop titles without genres (default: on)",
    )
    p.add_argument("--seed", type=int, help="split seed (env ANIGENRE_SPLIT_SEED, default 0)")
    p.set_defaults(run=run_preprocess, settings_overrides=_seed)

    d = sub.add_parser("dataset", help="import labelled posters, show dataset statistics")
    # type(d): the one-line-error parser class that the top level handed down.
    dsub = d.add_subparsers(dest="dataset_command", required=True, parser_class=type(d))
    imp = dsub.add_parser("import", help="import DIR/labels.csv + DIR/images/")
    imp.add_argument("folder", type=types.local_path, help="folder with labels.csv and images/")
    imp.add_argument("--replace", action="store_true", help="start the dataset afresh")
    imp.add_argument("--seed", type=int, help="split seed for new groups")
    imp.set_defaults(run=run_import, settings_overrides=_seed)
    st = dsub.add_parser("stats", help="per-genre counts per split, as a table and a PNG")
    st.add_argument(
        "--out", type=types.local_path, help="where to write the CSV and PNG (default processed/)"
    )
    st.set_defaults(run=run_stats, settings_overrides=lambda a: {})


def _seed(args) -> dict:
    return {"split_seed": args.seed}


def run_preprocess(args, settings: Settings) -> int:
    from anigenre.core.dataset import Filters  # pandas: only for the commands that need it

    filters = Filters(args.years, args.require_score, args.require_studio, args.require_genres)
    change = stages.preprocess(settings, filters)
    for name, removed in change.filtered:
        print(f"  filter {name:<22} removed {removed}")
    _print_change(change, settings)
    return 0


def run_import(args, settings: Settings) -> int:
    change = stages.import_dataset(settings, args.folder, replace=args.replace)
    for name, reason in change.skipped[:_SHOW_SKIPPED]:
        print(f"  skipped {name}: {reason}")
    if len(change.skipped) > _SHOW_SKIPPED:
        print(f"  ... and {len(change.skipped) - _SHOW_SKIPPED} more skipped")
    for name, same in change.duplicate_files[:_SHOW_SKIPPED]:
        print(f"  duplicate {name}: same image as {same}")
    _print_change(change, settings)
    return 0


def _print_change(change: stages.DatasetChange, settings: Settings) -> None:
    splits = ", ".join(f"{k} {change.splits.get(k, 0)}" for k in ("train", "val", "test"))
    where = change.path
    if settings.data_uri:  # where it lives for every machine, not this one's mirror
        where = settings.data_location(*change.path.relative_to(settings.data_dir).parts)
    print(
        f"dataset {where}: {change.total} posters ({splits}); "
        f"{change.added} added, {change.duplicates} already present, {len(change.skipped)} skipped"
    )


def run_stats(args, settings: Settings) -> int:
    result = stages.dataset_stats(settings, args.out)
    print(result.table.to_string())
    print(f"fingerprint {result.fingerprint[:16]}")
    print(f"wrote {result.csv_path} and {result.png_path}")
    return 0
