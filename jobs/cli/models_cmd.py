"""``anigenre train``, ``anigenre models list|card|promote|demote`` and ``anigenre evaluate``."""

from __future__ import annotations

import argparse
import sys

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.jobs.cli import args as types

# Spelled out so that `--help` needs no Keras import; a test holds it to models.backbones.
BACKBONE_NAMES = (
    "resnet50",
    "inception_v3",
    "mobilenet_v2_0.35",
    "mobilenet_v2_1.0",
    "mobilenet_v2_1.0_int8",
    "mobilenet_v2_1.0_with_0.35",
    "mobilenet_v2_1.0_with_0.35_int8",
    "mobilenet_v2_1.0_ptq_int8",
    "custom_cnn",
)
DEFAULT_BACKBONE = "mobilenet_v2_1.0_with_0.35_int8"
LABEL_SOURCES = ("mal-mapped", "anilist")  # core.dataset's label_source values
AUGMENT_VIEWS = ("flip", "zoom")  # models.config's; a test holds the two together


def add_train_arguments(t) -> None:
    """The flags of a training run, shared by ``train`` and ``jobs submit train``."""
    t.add_argument("--backbone", choices=BACKBONE_NAMES, default=DEFAULT_BACKBONE)
    t.add_argument(
        "--weights",
        default="auto",
        help="auto (local file, else imagenet) | imagenet | none | PATH",
    )
    t.add_argument(
        "--epochs", type=types.positive_int, default=60, help="at most; early stopping on val mAP"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=types.positive_int, default=32)
    t.add_argument(
        "--lr",
        type=types.positive_float,
        default=None,
        help="learning rate (default: 3e-3 for a frozen backbone's heads, 1e-3 end to end)",
    )
    t.add_argument("--loss", choices=("bce", "weighted-bce", "focal"), default="bce")
    t.add_argument("--dropout", type=float, default=0.3)
    t.add_argument("--hidden", type=int, default=256, help="units of a hidden head layer (0: none)")
    t.add_argument(
        "--ensemble",
        type=types.positive_int,
        default=5,
        help="average this many heads trained from consecutive seeds (frozen backbones)",
    )
    t.add_argument("--patience", type=types.positive_int, default=10)
    t.add_argument(
        "--fine-tune", type=int, default=0, metavar="N", help="train the top N backbone layers"
    )
    t.add_argument(
        "--input-size", type=types.image_size, help="HxW, e.g. 320x224 (default: the backbone's)"
    )
    t.add_argument("--resize", choices=("stretch", "pad", "center-crop"), default="stretch")
    t.add_argument("--tta", choices=("none", "flip"), default="none", help="test-time augmentation")
    t.add_argument(
        "--augment",
        type=augment_views,
        default="flip",
        metavar="VIEWS",
        help="training-only views of each poster, comma-separated: flip, zoom; or none",
    )
    t.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals")
    t.add_argument(
        "--label-convention",
        choices=(*LABEL_SOURCES, "none"),
        default="mal-mapped",
        help="the labels' convention the model predicts in; posters labelled in another one "
        "teach it as an offset ('none': every poster's labels alike)",
    )


def augment_views(text: str) -> tuple[str, ...]:
    """``flip,zoom`` -> ("flip", "zoom"); ``none`` -> ()."""
    views = tuple(v.strip() for v in text.split(",") if v.strip() and v.strip() != "none")
    bad = [v for v in views if v not in AUGMENT_VIEWS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown view {bad[0]!r}; choose from {', '.join(AUGMENT_VIEWS)} or none"
        )
    return views


def train_config(args):
    """The TrainConfig the flags of ``add_train_arguments`` describe."""
    from anigenre.models.config import TrainConfig

    try:
        return TrainConfig(
            backbone=args.backbone,
            weights=args.weights,
            input_size=args.input_size,
            resize_policy=args.resize,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            loss=args.loss,
            dropout=args.dropout,
            hidden=args.hidden,
            ensemble=args.ensemble,
            patience=args.patience,
            seed=args.seed,
            fine_tune=args.fine_tune,
            tta=() if args.tta == "none" else (args.tta,),
            augment=args.augment,
            bootstrap=args.bootstrap,
            label_convention=None if args.label_convention == "none" else args.label_convention,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def register(sub) -> None:
    t = sub.add_parser("train", help="train on processed/dataset.parquet and register the model")
    add_train_arguments(t)
    t.set_defaults(run=run_train, settings_overrides=lambda a: {})

    m = sub.add_parser("models", help="list trained models")
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=type(m))
    ls = msub.add_parser("list", help="id, backbone, created, test mAP, aliases")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(run=run_list, settings_overrides=lambda a: {})
    register_aliases(msub)
    register_card(msub)

    e = sub.add_parser("evaluate", help="per-genre table and summary against the baselines")
    e.add_argument("model", help="model id (or a unique prefix, or 'latest')")
    src = e.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset", type=types.local_path, help="a dataset.parquet (its test split); default ours"
    )
    src.add_argument(
        "--folder", type=types.local_path, help="a labelled folder: labels.csv + images/"
    )
    types.add_include_seen(e)
    e.set_defaults(run=run_evaluate, settings_overrides=lambda a: {})


def run_train(args, settings: Settings) -> int:
    from anigenre.core.progress import Progress
    from anigenre.jobs import stages

    config = train_config(args)
    with Progress(
        "train",
        unit="epoch",
        total=args.epochs,  # of one head: an ensemble's bar restarts for each
        every_s=settings.progress_every_s,
        quiet=args.quiet,
    ) as bar:

        def embedded(done: int, total: int) -> None:
            # Embeddings come first (per split, those the feature cache lacks), then epochs.
            if done == 0:
                bar.phase("embed", total=total, unit="poster")
            bar.update(done - bar.n)
            if done == total:
                bar.phase("train", total=args.epochs, unit="epoch")

        model_id, manifest = stages.train_model(settings, config, bar, embedded)
    print(f"model {model_id} saved under {settings.data_location('models', model_id)}")
    t = manifest.training
    print(
        f"  {t.mode} training, {t.epochs_run} epochs (best {t.best_epoch}), "
        f"{t.features_computed} backbone embeddings computed (the rest from the cache)"
    )
    print(format_summary(manifest.metrics_summary))
    print(f"  its model card: anigenre models card {model_id}")
    return 0


def format_summary(summary: dict) -> str:
    def cell(value, ci=None) -> str:
        text = "   -  " if value is None else f"{value:.3f}"
        return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text

    columns = "".join(f"{c:<22}" for c in ("macro mAP", "micro mAP", "P@3", "micro F1"))
    head = f"  test n={summary['n_test']:<6} {columns}keras acc"
    lines = [head]
    for name, key, ci in (("model", "test", "test_ci95"), ("prior", "prior", "prior_ci95")):
        row, cis = summary[key], summary[ci]
        cells = [
            cell(row[k], cis.get(k)).ljust(22)
            for k in ("macro_map", "micro_map", "p@3", "micro_f1")
        ]
        lines.append(f"  {name:<13}" + "".join(cells) + cell(row["keras_binary_accuracy"]))
    for source, row in (summary.get("by_label_source") or {}).items():
        if source == "pooled" or len(summary["by_label_source"]) < 3:
            continue  # one source: the pooled rows above are its figures
        cells = [cell(row.get(k)).ljust(22) for k in ("macro_map", "micro_map", "p@3", "micro_f1")]
        lines.append(
            f"  {source[:12]:<13}" + "".join(cells) + f"n={row['n']}, genres/poster "
            f"{row['predicted_per_poster']:.2f} predicted, {row['true_per_poster']:.2f} true"
        )
    lines += [
        "  [95% BCa bootstrap intervals over posters; none under 20 posters, or where the "
        "bootstrap cannot place one]",
        "  keras acc: the paper's figure, the share of poster-genre pairs right at 0.5; the "
        "prior scores about as high, so it says little",
    ]
    return "\n".join(lines)


def run_list(args, settings: Settings) -> int:
    import json

    from anigenre.models.synced import Registry

    registry = Registry(settings)
    listing = registry.listing()
    models = listing.models
    named = registry.names()
    tags = {m.model_id: named.get(m.model_id, []) for m in models}
    if models:
        tags[models[-1].model_id] = ["latest", *tags[models[-1].model_id]]
    if args.json:
        rows = [
            {
                "model_id": m.model_id,
                "backbone": m.backbone,
                "created": m.created,
                "test_macro_map": m.metrics_summary["test"]["macro_map"],
                "prior_macro_map": m.metrics_summary["prior"]["macro_map"],
                "aliases": tags[m.model_id],
            }
            for m in models
        ]
        print(json.dumps(rows, indent=2))
        return _damaged(listing.problems)
    if not models and not listing.problems:
        print(f"no models in {settings.data_location('models')}; train one with 'anigenre train'")
        return 0
    if not models:
        return _damaged(listing.problems)
    id_w = max(len("model id"), *(len(m.model_id) for m in models)) + 2
    bb_w = max(len("backbone"), *(len(m.backbone) for m in models)) + 2
    head = f"{'model id':<{id_w}}{'backbone':<{bb_w}}{'created':<27}{'test mAP':>9}{'prior':>8}"
    print(f"{head}  aliases")
    for m in models:
        s = m.metrics_summary
        print(
            f"{m.model_id:<{id_w}}{m.backbone:<{bb_w}}{m.created:<27}"
            f"{s['test']['macro_map']:>9.3f}{s['prior']['macro_map']:>8.3f}"
            f"  {', '.join(tags[m.model_id])}".rstrip()
        )
    return _damaged(listing.problems)


def _damaged(problems: dict[str, str]) -> int:
    """A line on stderr for each damaged model, and the exit status: 1 if there is one, as
    ``ls`` does for what it cannot read (the models that can be read are still listed)."""
    for why in problems.values():
        print(f"anigenre: {why}", file=sys.stderr)
    return 1 if problems else 0


# --- models card --------------------------------------------------------------------------


def register_card(msub) -> None:
    c = msub.add_parser("card", help="print a model's card (MODEL_CARD.md in its folder)")
    c.add_argument("model", help="model id (or a unique prefix, or 'latest')")
    c.set_defaults(run=run_card, settings_overrides=lambda a: {})


def run_card(args, settings: Settings) -> int:
    from anigenre.models.synced import Registry

    card = Registry(settings).card(args.model)
    print(card.text, end="")
    if card.written:
        print(f"(this model had no card file: wrote {card.where})", file=sys.stderr)
    return 0


# --- evaluate ------------------------------------------------------------------------------


def run_evaluate(args, settings: Settings) -> int:
    from anigenre.jobs import stages

    result = stages.evaluate_model(
        settings,
        args.model,
        dataset=args.dataset,
        folder=args.folder,
        include_seen=args.include_seen,
    )
    for note in result.notes:
        print(note)
    print(result.table.to_string(index=False))
    if result.skipped:
        print(
            f"  {len(result.skipped)} file(s) skipped: "
            + "; ".join(f"{p} ({r})" for p, r in result.skipped[:5])
        )
    print(format_summary(result.summary))
    return 0


# --- aliases: ``models promote ID --as NAME`` and ``models demote NAME`` -----------------


def register_aliases(msub) -> None:
    from anigenre.models.aliases import DEFAULT_ALIAS

    p = msub.add_parser(
        "promote", help="point an alias (default 'production') at a model; --model NAME uses it"
    )
    p.add_argument("model", help="model id (or a unique prefix, 'latest', or another alias)")
    p.add_argument("--as", dest="alias", default=DEFAULT_ALIAS, help="the alias to set")
    p.set_defaults(run=run_promote, settings_overrides=lambda a: {})
    d = msub.add_parser("demote", help="remove an alias (the model stays)")
    d.add_argument("alias")
    d.set_defaults(run=run_demote, settings_overrides=lambda a: {})


def run_promote(args, settings: Settings) -> int:
    from anigenre.models.synced import Registry

    model_id, previous = Registry(settings).promote(args.model, args.alias)
    was = "" if previous in (None, model_id) else f" (was {previous})"
    print(f"{args.alias} -> {model_id}{was}")
    return 0


def run_demote(args, settings: Settings) -> int:
    from anigenre.models.synced import Registry

    model_id = Registry(settings).demote(args.alias)
    print(f"removed alias {args.alias} (it pointed at {model_id})")
    return 0
