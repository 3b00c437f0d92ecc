"""Training: frozen-backbone features + head (seconds once features are cached), or
end-to-end for the custom CNN and for fine-tuning. Returns the model, its manifest
fields and its metrics; saving is the registry's job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from anigenre.core.errors import ConfigError, DataError
from anigenre.core.genres import Vocabulary
from anigenre.models.backbones import (
    BackboneSpec,
    WeightsSource,
    build_backbone,
    resolve_weights,
    spec_for,
)
from anigenre.models.callbacks import ProgressBar, ValMAPEarlyStopping
from anigenre.models.config import TrainConfig
from anigenre.models.embed import decode_all, embed_files, features_engine, features_extractor
from anigenre.models.evaluation import evaluation_report
from anigenre.models.features import FeatureCache, cache_key
from anigenre.models.heads import average_heads, build_head, make_loss
from anigenre.models.int8 import quantized_weights


@dataclass
class TrainOutcome:
    model: keras.Model  # 0..255 RGB image -> genre probabilities
    spec: BackboneSpec
    weights: WeightsSource
    size: tuple[int, int]
    report: dict
    epochs_run: int
    best_epoch: int
    val_history: list[float]
    loss_history: list[float]
    features_computed: int
    probs: dict[str, np.ndarray]  # "val" and "test" probabilities, for comparisons
    taps: tuple[str, ...] = ()  # the inner layers whose pooled outputs joined the features
    feature_scale: float | None = None  # the head's constant input scale, when it has one


@dataclass
class Split:
    paths: list[Path]
    shas: list[str]
    Y: np.ndarray
    # Each row's label convention (the dataset's ``label_source``; None where unknown).
    sources: list[str | None] | None = None


def train(
    dataset: pd.DataFrame,
    vocab: Vocabulary,
    *,
    data_dir: Path,
    weights_dir: Path,
    config: TrainConfig,
    max_pixels: int,
    bar=None,
    on_embedded: Callable[[int, int], None] | None = None,
) -> TrainOutcome:
    """``bar`` (tqdm-shaped) counts the epochs; ``on_embedded(done, total)`` hears the
    backbone embeddings the feature cache lacked, often most of the time, as they are made."""
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    spec = spec_for(config.backbone)
    weights = resolve_weights(spec, config.weights, weights_dir)
    size = tuple(config.input_size or spec.default_size)
    splits = dataset_splits(dataset, data_dir)
    taps = spec.taps if config.taps is None else tuple(config.taps)
    backbone = build_backbone(spec, size, weights, taps)
    end_to_end = config.fine_tune > 0 or not spec.pretrained
    if end_to_end and weights.features is not None:
        raise ConfigError(f"{spec.name}'s int8 features are frozen; fine-tune mobilenet_v2_1.0")
    if end_to_end and spec.companion:
        # The top N layers would all be the companion's (its branch is built last).
        raise ConfigError(
            f"{spec.name} runs two networks; fine-tune one: --backbone mobilenet_v2_1.0"
        )
    if spec.quantize and not end_to_end:  # serves int8: the head learns its numbers
        weights = quantized_weights(
            backbone, weights, splits["train"].paths, splits["train"].shas, size,
            config.resize_policy, data_dir=data_dir, max_pixels=max_pixels, taps=taps,
        )  # fmt: skip
    runner = _EndToEnd if end_to_end else _Frozen
    run = runner(
        backbone,
        spec,
        weights,
        size,
        splits,
        config,
        data_dir,
        max_pixels,
        len(vocab),
        taps,
        on_embedded=on_embedded,
    )

    def callbacks(predict_val, head: int = 0) -> list:
        early = ValMAPEarlyStopping(predict_val, splits["val"].Y, config.patience)
        heads = 1 if end_to_end else config.ensemble
        return [early] + ([ProgressBar(bar, head, heads)] if bar is not None else [])

    early = run.fit(callbacks)
    probs = {"val": getattr(run, "val_own", None), "test": run.predict("test")}
    if probs["val"] is None:
        probs["val"] = run.predict("val")
    report = evaluation_report(
        probs["val"],
        splits["val"].Y,
        probs["test"],
        splits["test"].Y,
        splits["train"].Y,
        vocab.genres,
        n_boot=config.bootstrap,
        seed=config.seed,
        sources=splits["test"].sources,
    )
    return TrainOutcome(
        model=run.full_model(),
        spec=spec,
        weights=weights,
        size=size,
        report=report,
        epochs_run=len(early.history),
        best_epoch=early.best_epoch + 1,
        val_history=early.history,
        loss_history=[float(v) for v in run.history.get("loss", [])],
        features_computed=run.features_computed,
        probs=probs,
        taps=taps,
        feature_scale=run.scale,
    )


def _split(dataset: pd.DataFrame, name: str, data_dir: Path) -> Split:
    part = dataset[dataset["split"] == name]
    labels = (
        np.stack(part["labels"].to_numpy()).astype(np.float32) if len(part) else np.zeros((0, 0))
    )
    sources = None
    if "label_source" in part.columns:
        sources = [s if isinstance(s, str) and s else None for s in part["label_source"]]
    return Split([data_dir / p for p in part["path"]], part["sha256"].tolist(), labels, sources)


# The "zoom" training view: the middle 1/1.15 of the poster (87% of each side) filling
# the input, as if the poster were framed a little tighter.
ZOOM = 1.15


def _views(config: TrainConfig) -> list[str]:
    """The views a poster is scored on (served): the plain one and the TTA's."""
    return ["plain", *config.tta]


def _train_views(config: TrainConfig) -> list[str]:
    """The views whose features train the heads: the scored ones (flipped TTA copies
    double as augmentation) and the training-only ``augment`` views, each once."""
    return list(dict.fromkeys([*_views(config), *config.augment]))


def split_features(
    backbone: keras.Model,
    spec: BackboneSpec,
    weights: WeightsSource,
    size: tuple[int, int],
    policy: str,
    view: str,
    splits: dict[str, Split],
    *,
    data_dir: Path,
    max_pixels: int,
    taps: tuple[str, ...],
    on_embedded: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Backbone embeddings of every split through the feature cache; (per split, computed).
    ``taps``: the ones ``backbone`` was built with (they are part of the key)."""
    named = f"zoom{ZOOM}" if view == "zoom" else view  # another zoom: other features
    key = cache_key(
        spec.name, weights.features_id, size, policy, named, engine=features_engine(weights)
    )
    cache = FeatureCache(data_dir / "features", {**key, "taps": list(taps)} if taps else key)
    extract = None  # made on the first miss, for as many images as are missing
    path_of = {s: p for part in splits.values() for s, p in zip(part.shas, part.paths, strict=True)}

    def compute(missing: list[str]) -> np.ndarray:
        nonlocal extract
        extract = extract or features_extractor(backbone, weights, len(missing))
        paths = [path_of[s] for s in missing]
        return embed_files(
            extract,
            paths,
            size,
            policy,
            max_pixels=max_pixels,
            flip=view == "flip",
            zoom=ZOOM if view == "zoom" else 1.0,
            on_progress=on_embedded,
        )

    out, computed = {}, 0
    for name, part in splits.items():
        out[name], n = cache.get_or_compute(part.shas, compute)
        computed += n
    return out, computed


def dataset_splits(dataset: pd.DataFrame, data_dir: Path) -> dict[str, Split]:
    splits = {name: _split(dataset, name, data_dir) for name in ("train", "val", "test")}
    for name, part in splits.items():
        if len(part.shas) == 0:
            raise DataError(f"the dataset has no {name} rows; add data or rebuild the splits")
    return splits


class _Frozen:
    """Backbone frozen: its embeddings come from the feature cache, only the head trains."""

    def __init__(
        self,
        backbone,
        spec,
        weights,
        size,
        splits,
        config,
        data_dir,
        max_pixels,
        n,
        taps,
        on_embedded=None,
    ):
        self.backbone, self.config, self.splits = backbone, config, splits
        self.features_computed = 0
        self.X: dict[str, dict[str, np.ndarray]] = {}
        scored = _views(config)
        for view in _train_views(config):
            # A training-only view is embedded for the training posters alone.
            wanted = splits if view in scored else {"train": splits["train"]}
            self.X[view], computed = split_features(
                backbone,
                spec,
                weights,
                size,
                config.resize_policy,
                view,
                wanted,
                data_dir=data_dir,
                max_pixels=max_pixels,
                taps=taps,
                on_embedded=on_embedded,
            )
            self.features_computed += computed
        self.n_genres = n
        train_x = self.X["plain"]["train"]
        self.scale = (
            float(1.0 / np.mean(np.linalg.norm(train_x, axis=1)))
            if config.feature_scale == "unit-norm" and len(train_x)
            else None
        )
        self.head: keras.Model | None = None
        self.history: dict = {}
        self.others = other_conventions(splits["train"].sources, config.label_convention)
        self.own = False  # while fitting, heads read each row's own convention indicators

    def _inputs(self, view: str, split: str, own: bool):
        """Features, and while the heads train (``own``), each row's indicator per other
        label convention (the heads' second input)."""
        x = self.X[view][split]
        if not (own and self.others):
            return x
        return [x, convention_indicators(self.splits[split].sources, self.others)]

    def fit(self, callbacks) -> ValMAPEarlyStopping:
        """Train ``config.ensemble`` heads from consecutive seeds; their mean is the head."""
        train_views = _train_views(self.config)
        inputs = [self._inputs(v, "train", True) for v in train_views]
        X = (
            [np.concatenate([i[0] for i in inputs]), np.concatenate([i[1] for i in inputs])]
            if self.others
            else np.concatenate(inputs)
        )
        Y = np.concatenate([self.splits["train"].Y] * len(train_views))
        dim = self.X["plain"]["train"].shape[1]
        heads, first_early = [], None
        self.own = True
        for k in range(self.config.ensemble):
            keras.utils.set_random_seed(self.config.seed + k)
            head = build_head(
                dim,
                self.n_genres,
                conventions=len(self.others),
                dropout=self.config.dropout,
                hidden=self.config.hidden,
                name=f"head{k}",
                scale=self.scale,
            )
            head.compile(
                optimizer=keras.optimizers.Adam(self.config.lr(frozen=True)),
                loss=make_loss(self.config.loss, self.splits["train"].Y),
            )
            self.head = head  # predict_val scores the head being trained
            cbs = callbacks(self.predict_val, k)
            result = head.fit(
                X,
                Y,
                epochs=self.config.epochs,
                batch_size=self.config.batch_size,
                shuffle=True,
                verbose=0,
                callbacks=cbs,
            )
            heads.append(head)
            if first_early is None:
                first_early, self.history = cbs[0], result.history
        # The decision rule is tuned on validation scores in each poster's own convention
        # (calibrated to its labels); served, the indicators are zero: the target's.
        views = _views(self.config)
        self.val_own = np.mean(
            [h.predict_on_batch(self._inputs(v, "val", True)) for h in heads for v in views],
            axis=0,
        )
        self.head = average_heads([drop_inputs(h) for h in heads] if self.others else heads)
        self.own = False
        return first_early

    def predict(self, split: str) -> np.ndarray:
        # One call on the whole split: predict() would build a tf.data pipeline for a few
        # hundred rows each epoch, and TensorFlow logs a spurious error line for it.
        outs = [
            self.head.predict_on_batch(self._inputs(v, split, self.own))
            for v in _views(self.config)
        ]
        return np.mean(outs, axis=0)

    def predict_val(self) -> np.ndarray:
        return self.predict("val")

    def full_model(self) -> keras.Model:
        return compose(self.backbone, self.head)


class _EndToEnd:
    """Images in memory, the backbone's top layers (or all of it) trained with the head."""

    def __init__(
        self,
        backbone,
        spec,
        weights,
        size,
        splits,
        config,
        data_dir,
        max_pixels,
        n,
        taps,
        on_embedded=None,  # end to end, nothing is embedded ahead of the epochs
    ):
        self.config, self.splits = config, splits
        self.features_computed = 0
        self.scale = None  # features are not cached end to end, so the head reads them raw
        self.images = {
            name: decode_all(part.paths, size, config.resize_policy, max_pixels)
            for name, part in splits.items()
        }
        _unfreeze_top(backbone, config.fine_tune if spec.pretrained else None)
        head = build_head(
            backbone.output_shape[-1], n, dropout=config.dropout, hidden=config.hidden
        )
        self.model = compose(backbone, head)
        self.history: dict = {}

    def fit(self, callbacks) -> ValMAPEarlyStopping:
        cbs = callbacks(self.predict_val)
        x, y = self.images["train"], self.splits["train"].Y
        if "flip" in _train_views(self.config):
            x, y = np.concatenate([x, x[:, :, ::-1]]), np.concatenate([y, y])
        self.model.compile(
            optimizer=keras.optimizers.Adam(self.config.lr(frozen=False)),
            loss=make_loss(self.config.loss, self.splits["train"].Y),
        )
        result = self.model.fit(
            x.astype(np.float32),
            y,
            epochs=self.config.epochs,
            batch_size=self.config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=cbs,
        )
        self.history = result.history
        return cbs[0]

    def predict(self, split: str) -> np.ndarray:
        x = self.images[split].astype(np.float32)
        views = [x] + ([x[:, :, ::-1]] if "flip" in self.config.tta else [])
        return np.mean([self.model.predict(v, verbose=0, batch_size=32) for v in views], axis=0)

    def predict_val(self) -> np.ndarray:
        return self.predict("val")

    def full_model(self) -> keras.Model:
        return self.model


def other_conventions(sources: list[str | None] | None, target: str | None) -> tuple[str, ...]:
    """The label conventions of the training rows other than ``target``, in a fixed order:
    each gets an indicator column while the heads train. None without a target, where the
    rows carry no ``label_source``, or where no row is of the target's: the served offsets
    would then be learnt from no poster at all."""
    if not target or not sources or target not in sources:
        return ()
    return tuple(sorted({s for s in sources if s and s != target}))


def convention_indicators(sources: list[str | None] | None, others: tuple[str, ...]) -> np.ndarray:
    """One 0/1 column per convention of ``others``; a row of the target convention, or of
    none known, is all zero."""
    n = len(sources or [])
    out = np.zeros((n, len(others)), dtype=np.float32)
    for i, s in enumerate(sources or []):
        if s in others:
            out[i, others.index(s)] = 1.0
    return out


def drop_inputs(head: keras.Model) -> keras.Model:
    """``head`` without its label-convention input, as if it were all zero: the rows of
    the first Dense kernel that read it are dropped (exact, whatever the layers after it)."""
    dim = head.input_shape[0][-1]
    hidden = head.get_layer("head_hidden") if _has_layer(head, "head_hidden") else None
    scale = head.get_layer("head_scale").scale if _has_layer(head, "head_scale") else None
    out = build_head(
        dim,
        head.get_layer("genres").units,
        dropout=head.get_layer("head_dropout").rate,
        hidden=hidden.units if hidden is not None else 0,
        name=head.name,
        scale=scale,
    )
    first = "head_hidden" if hidden is not None else "genres"
    for layer in head.layers:
        if not layer.weights:
            continue
        weights = layer.get_weights()
        if layer.name == first:
            weights[0] = weights[0][:dim]
        out.get_layer(layer.name).set_weights(weights)
    return out


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def compose(backbone: keras.Model, head: keras.Model) -> keras.Model:
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inputs, head(backbone(inputs)), name="anigenre")


def _unfreeze_top(backbone: keras.Model, n_layers: int | None) -> None:
    """Train the top ``n_layers`` of the backbone (None: all). Batch norm stays frozen:
    its statistics from ImageNet are worth more than what a few hundred posters give."""
    layers = [layer for layer in _flatten(backbone) if layer.weights]
    trainable = set(map(id, layers if n_layers is None else layers[-n_layers:]))
    for layer in _flatten(backbone):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = id(layer) in trainable and not is_bn


def _flatten(model: keras.Model) -> list:
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layer.trainable = True  # containers on; leaves decide
            out.extend(_flatten(layer))
        else:
            out.append(layer)
    return out
