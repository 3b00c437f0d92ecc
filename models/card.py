"""The model card: what a person needs to know before trusting a model, as Markdown.

Pure: a manifest and its ``metrics.json`` report in, text out. ``models.registry`` writes it
as ``MODEL_CARD.md`` beside the model at save time; ``anigenre models card`` renders it for
any model, older ones included (whatever they did not record says "not recorded"). The web
page's card (``jobs.web.cards``) lays out the pieces made here: ``input_text``,
``training_text``, ``weights_sources``, ``headline``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from anigenre.models.manifest import DatasetRecord, Manifest, Training, Weights

# A genre with fewer test positives than this has an AP that a handful of posters decides:
# the card lists such genres among the failure modes.
FEW_POSITIVES = 10
NOT_RECORDED = "not recorded"
SPLITS = ("train", "val", "test")

# The held-out figures a card heads with, as (label, key in metrics_summary's figures).
HEADLINE = (("macro mAP", "macro_map"), ("micro mAP", "micro_map"), ("P@3", "p@3"))
HEADLINE_F1 = ("micro F1", "micro_f1")
# (row name, figures key, intervals key) of metrics_summary: the model's and the prior's.
HEADLINE_ROWS = (("model", "test", "test_ci95"), ("prior", "prior", "prior_ci95"))

# Weights files known to the project and their licences (../shared/weights/README.md).
WEIGHT_LICENCES = {
    "mobilenet_v2_0.35_224_no_top.weights.h5": "MobileNetV2 α 0.35 ImageNet weights, Apache-2.0",
    "mobilenet_v2_1.0_224.weights.h5": "MobileNetV2 α 1.0 ImageNet weights (rebuilt from "
    "Google's TFLite model), Apache-2.0",
}


def render_card(manifest: Manifest, metrics: dict | None) -> str:
    """The card of the model ``manifest`` describes; ``metrics`` is its ``metrics.json``
    (None when it cannot be read: the card then says what it lacks)."""
    metrics = metrics or {}
    genres = list(manifest.genres)
    sections = [
        _header(manifest),
        _intended_use(genres),
        _training_data(manifest.dataset, genres),
        _performance(manifest, metrics, genres),
        _decision_rule(manifest, genres),
        _failure_modes(manifest, metrics, genres),
        _licences(manifest),
    ]
    return "\n\n".join(sections) + "\n"


def _num(value, digits: int = 3, missing: str = NOT_RECORDED) -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _ci(bounds) -> str:
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else NOT_RECORDED


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _header(manifest: Manifest) -> str:
    seed = NOT_RECORDED if manifest.seed is None else manifest.seed
    return "\n".join(
        [
            f"# Model card: {manifest.model_id}",
            "",
            f"- Backbone: {manifest.backbone} (weights: {weights_sources(manifest.weights)}), "
            f"{training_text(manifest.training)}",
            f"- Input: {input_text(manifest)}",
            _features_line(manifest.training),
            f"- Created {manifest.created}, seed {seed}",
            f"- Genres ({len(manifest.genres)}): {', '.join(manifest.genres)}",
        ]
    )


def input_text(manifest: Manifest) -> str:
    """E.g. "320x224 RGB, resize policy pad, test-time augmentation flip"."""
    h, w = manifest.input_size
    tta = "+".join(manifest.tta) or "none"
    return f"{h}x{w} RGB, resize policy {manifest.resize_policy}, test-time augmentation {tta}"


def training_text(training: Training) -> str:
    """E.g. "frozen training, 12 epochs (best 9)"."""
    mode = training.mode or NOT_RECORDED
    epochs = "?" if training.epochs_run is None else training.epochs_run
    best = "?" if training.best_epoch is None else training.best_epoch
    return f"{mode} training, {epochs} epochs (best {best})"


def weights_sources(weights: Weights) -> str:
    """Where the weights came from, the companion network's too: "file; companion's: file"."""
    text = weights.source or NOT_RECORDED
    if weights.companion is not None:
        text += f"; companion's: {weights.companion.source or NOT_RECORDED}"
    return text


def _features_line(training: Training) -> str:
    """What the head reads, for models recorded since taps and the scale existed."""
    if training.taps is None:
        return "- Features: the backbone's pooled last layer, unscaled"
    taps = "".join(f" and pooled {t}" for t in training.taps)
    if training.companion:
        taps += f", with {training.companion}'s pooled last layer"
    scale = training.feature_scale
    scaled = f"scaled by {scale:.4g} to unit mean L2 norm" if scale else "unscaled"
    rate = NOT_RECORDED if training.learning_rate is None else training.learning_rate
    return f"- Features: the backbone's pooled last layer{taps}, {scaled}; learning rate {rate}"


def _intended_use(genres: list[str]) -> str:
    return "\n".join(
        [
            "## Intended use",
            "",
            f"- Suggesting which of AniList's {len(genres)} genres an anime has, from its "
            "poster alone: a ranked list and per-genre probabilities for a person to "
            "confirm, tagging aid, triage and statistics over large poster folders.",
            "- Comparing runs: the report of a prediction run sets each genre's predicted "
            "rate beside the rate expected from validation (below).",
            "",
            "## Out-of-scope use",
            "",
            "- Deciding a title's genres without a person's check: even the best genres "
            "are far from exact (figures below).",
            "- Anything that is not an anime poster (photographs, manga pages, screenshots, "
            "other artwork), and genres outside the list above.",
            "- Content rating or moderation (age ratings, adult content): the model was not "
            "trained or evaluated for it.",
            "- Judging people, studios or artists.",
        ]
    )


def _training_data(dataset: DatasetRecord, genres: list[str]) -> str:
    rows, sources, years = dataset.rows, dataset.sources, dataset.years
    if not dataset.years_recorded:
        years_text = NOT_RECORDED
    elif years is None:
        years_text = "no poster has a year"
    else:
        years_text = f"{years[0]}–{years[1]}"
    source_text = (
        ", ".join(f"{k} {v}" for k, v in sorted(sources.items())) if sources else NOT_RECORDED
    )
    lines = [
        "## Training data",
        "",
        f"- Sources (dataset `source` column): {source_text}. `scrape` rows come from "
        "AniList's API; `import` rows from labelled folders (the folders' paths are not "
        "recorded in the dataset).",
        "- Posters per split: "
        + (", ".join(f"{s} {rows.get(s, 0)}" for s in SPLITS) if rows else NOT_RECORDED)
        + " (franchises never straddle splits; thresholds are tuned on val, figures are on "
        "test)",
        f"- Years: {years_text}",
        f"- Dataset fingerprint: `{dataset.fingerprint or NOT_RECORDED}`",
        "",
    ]
    counts = dataset.genre_counts
    if not counts:
        return "\n".join([*lines, f"Positives per genre and split: {NOT_RECORDED}."])
    table = [[g, *(counts.get(s, {}).get(g, 0) for s in SPLITS)] for g in genres]
    lines += ["Positives per genre and split:", "", _table(["genre", *SPLITS], table)]
    return "\n".join(lines)


def figures_engine(manifest: Manifest) -> str:
    """Which network's numbers the figures are: the one that serves the model."""
    features = manifest.weights.features
    if features is None:
        return (
            "the figures are the Keras network's; its LiteRT export, which serves by "
            "default, gives the same numbers within 1e-5."
        )
    made = (
        f"our float network quantized to full integer on {features.calibration} training posters"
        if features.kind == "ptq"
        else f"the int8 ImageNet file {features.path.name}"
    )
    return (
        f"the figures are LiteRT's, the engine that serves: the int8 features network "
        f"({made}) and the float head trained on its features. `--engine keras` runs the "
        "float network it was quantized from with the same head, the reference, whose "
        "probabilities differ a little."
    )


def headline(summary: Mapping) -> list[tuple[str, dict[str, str]]]:
    """The held-out figures of the model and of the prior baseline from a manifest's
    ``metrics_summary``, each as "0.412 [0.380, 0.440]" by label ("-": not recorded)."""
    labels = (*HEADLINE, HEADLINE_F1)
    out = []
    for name, key, ci in HEADLINE_ROWS:
        figures, bounds = summary.get(key) or {}, summary.get(ci) or {}
        out.append((name, {label: _figure(figures.get(k), bounds.get(k)) for label, k in labels}))
    return out


def _figure(value, bounds) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" {_ci(bounds)}" if bounds else "")


def _performance(manifest: Manifest, metrics: dict, genres: list[str]) -> str:
    summary = manifest.metrics_summary
    test = metrics.get("test") or {}
    n = summary.get("n_test", test.get("n"))
    lines = [
        "## Held-out performance",
        "",
        f"On the {n if n is not None else '?'} test posters (never used to train or tune). "
        "95% BCa bootstrap intervals over posters (none under 20 posters, or where the "
        "bootstrap cannot place one). The label-frequency prior gives every "
        "poster each genre's training prevalence: a model must beat it to have learnt "
        "anything from the image.",
        "",
        f"Engine: {figures_engine(manifest)}",
        "",
    ]
    labels = [label for label, _ in (*HEADLINE, HEADLINE_F1)]
    rows = [[name, *(figures[label] for label in labels)] for name, figures in headline(summary)]
    lines.append(_table(["", *labels], rows))
    per_genre = {r["genre"]: r for r in test.get("per_genre", [])}
    intervals = (metrics.get("bootstrap_95") or {}).get("per_genre_ap")
    if not per_genre:
        lines += ["", f"Per-genre figures: {NOT_RECORDED} (metrics.json missing or unreadable)."]
        return "\n".join(lines)
    lines += ["", "Per genre on test (AP: average precision; support: test positives):", ""]
    table = []
    for g in genres:
        r = per_genre.get(g, {})
        if intervals is None:
            ci = NOT_RECORDED
        elif g in intervals:
            ci = _ci(intervals[g])
        else:  # no positives in test, too few posters, or no interval the bootstrap can place
            ci = "-"
        ap, auc = _num(r.get("ap"), missing="-"), _num(r.get("roc_auc"), missing="-")
        table.append([g, r.get("support", "?"), ap, ci, auc])
    return "\n".join(lines) + "\n" + _table(["genre", "support", "AP", "AP 95%", "ROC AUC"], table)


def _decision_rule(manifest: Manifest, genres: list[str]) -> str:
    rule = manifest.decision_rule
    expected = manifest.expected_rates
    prevalence = manifest.train_prevalence
    thresholds = manifest.thresholds
    mean_expected = manifest.expected_genres_per_poster
    mean_train = manifest.train_genres_per_poster
    params = ", ".join(
        f"{k} {rule[k]}" for k in ("rule", "cap", "tuned_on", "n_posters") if k in rule
    )
    lines = [
        "## Decision rule (the `predicted` column)",
        "",
        f"- Rule: {rule.get('text', NOT_RECORDED)}" + (f" ({params})" if params else ""),
        f"- Global threshold: {_num(manifest.global_threshold)}",
        f"- Genres predicted per poster: expected {_num(mean_expected, 2)} (on validation), "
        f"against {_num(mean_train, 2)} in the training labels",
        "- Expected rate: the share of validation posters the genre is predicted on. "
        "`anigenre report` sets each run's observed rate beside it and flags a ratio "
        "outside [0.5, 2]: a hint that the run's posters differ from these.",
        "",
    ]
    table = [
        [
            g,
            _num(thresholds.get(g)),
            _num(expected.get(g)) if expected else NOT_RECORDED,
            _num(prevalence.get(g)),
        ]
        for g in genres
    ]
    header = ["genre", "threshold", "expected rate", "training prevalence"]
    return "\n".join([*lines, _table(header, table)])


def _failure_modes(manifest: Manifest, metrics: dict, genres: list[str]) -> str:
    per_genre = {r["genre"]: r for r in (metrics.get("test") or {}).get("per_genre", [])}
    support = {g: per_genre[g]["support"] for g in genres if g in per_genre}
    if support:
        rare = [f"{g} ({n})" for g, n in support.items() if 0 < n < FEW_POSITIVES]
        absent = [g for g, n in support.items() if n == 0]
        rare_text = ", ".join(rare) if rare else "none"
        absent_text = ", ".join(absent) if absent else "none"
    else:
        rare_text = absent_text = NOT_RECORDED
    h, w = manifest.input_size
    return "\n".join(
        [
            "## Known failure modes",
            "",
            f"- Rare genres: fewer than {FEW_POSITIVES} test positives: {rare_text}. Their AP "
            "and interval rest on a handful of posters.",
            f"- Genres with no test positives, so no held-out figure at all: {absent_text}.",
            f"- Thumbnails and low-resolution posters: every poster is resized to {h}x{w}; "
            "small images (e.g. 150 px list thumbnails) lose the detail the model reads "
            "and score lower (docs/benchmarks.md, the default recipe over five splits: "
            "micro F1 0.498 with 150 px thumbnails among the test posters, 0.539 on "
            "full-size ones).",
            "- Franchises seen in training score higher: a sequel's poster looks like its "
            "predecessor's. `anigenre evaluate` and `anigenre report` leave out posters the "
            "model trained or tuned on and say how many; `--include-seen` scores them too, "
            "for comparison, never as the model's figure.",
            "- Distribution shift: other eras, styles or kinds of artwork move each genre's "
            "predicted rate; the run report flags genres at under 0.5x or over 2x their "
            "expected rate.",
            "- Genres are AniList's labels, which are incomplete and partly subjective; "
            "imported labels may be mapped from another site's genres.",
        ]
    )


def _weights_text(weights: Weights) -> str:
    """Where one network's weights came from and their licence, with a short sha256."""
    source = weights.source
    if source == "file":
        name = Path(weights.path or "").name
        text = WEIGHT_LICENCES.get(
            name, f"a local weights file ({name or NOT_RECORDED}): its own licence applies"
        )
    elif source == "imagenet":
        text = "ImageNet weights downloaded by keras.applications: their own licence applies"
    elif source == "none":
        text = "none: the network was trained from scratch on the data above"
    else:
        text = NOT_RECORDED
    sha = weights.sha256
    return text + (f" (sha256 `{sha[:12]}…`)" if sha else "")


def _licences(manifest: Manifest) -> str:
    weights = manifest.weights
    source = weights.source
    lines = [
        "## Licences and data terms",
        "",
        "- Posters are copyrighted artwork of their owners (studios, publishers, "
        "artists). They are used here to train and evaluate only; neither this model "
        "nor its card grants any right to them, and they are not redistributed with it.",
        "- Metadata and genres come from AniList's API, under AniList's terms of use; "
        "check them before any commercial use or redistribution of the data or of "
        "models trained on it.",
        f"- Pretrained weights: {_weights_text(weights)}.",
    ]
    if weights.companion is not None:
        name = manifest.training.companion or "the companion network"
        lines.append(f"- {name}'s weights: {_weights_text(weights.companion)}.")
    if source in ("file", "imagenet"):
        lines.append(
            "- ImageNet images, which the pretrained weights were learnt from, have their "
            "own terms of access."
        )
    return "\n".join(lines)
