"""The multi-label head and the losses that handle class imbalance. Sigmoid, never softmax:
genres are not mutually exclusive, and softmax would make them compete for one unit of mass."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

LOSSES = ("bce", "weighted-bce", "focal")


def build_head(
    feature_dim: int,
    n_genres: int,
    *,
    dropout: float = 0.3,
    hidden: int = 0,
    name: str = "head",
    scale: float | None = None,
    conventions: int = 0,
) -> keras.Model:
    """(x ``scale``) -> Dropout -> (hidden ReLU -> dropout) -> Dense sigmoid.

    ``conventions`` > 0: a second input of that many label-convention indicators joins
    the features after their dropout (a dropped indicator would teach the served
    convention some of the other's labels), read by the first Dense layer after the
    features' rows (``models.train.drop_inputs`` removes them for serving).

    ``scale``, a constant, brings the features to unit mean L2 norm (``feature_scale``):
    MobileNetV2's pooled features have a norm near 25, and the same Adam steps on inputs
    that large over-shoot (bench/recipe.py). Measured and dropped (bench/quality.py, five
    grouped splits): standardizing each feature (-0.06 macro mAP), L2 on the kernels."""
    inputs = keras.Input((feature_dim,), name="features")
    x = inputs
    if scale is not None:
        x = keras.layers.Rescaling(scale, name="head_scale")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if conventions:
        indicators = keras.Input((conventions,), name="conventions")
        x = keras.layers.Concatenate(name="head_conventions")([x, indicators])
        inputs = [inputs, indicators]
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(x)
        x = keras.layers.Dropout(dropout, name="head_dropout2")(x)
    outputs = keras.layers.Dense(n_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(inputs, outputs, name=name)


def average_heads(heads: list[keras.Model]) -> keras.Model:
    """One head whose output is the mean of several (an ensemble trained from other seeds)."""
    if len(heads) == 1:
        return heads[0]
    inputs = keras.Input(heads[0].input_shape[1:], name="features")
    outputs = keras.layers.Average(name="ensemble")([h(inputs) for h in heads])
    return keras.Model(inputs, outputs, name="head_ensemble")


@keras.saving.register_keras_serializable(package="anigenre")
class WeightedBCE(keras.losses.Loss):
    """Binary cross-entropy with a per-genre weight on the positive term."""

    def __init__(self, pos_weight, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weight = [float(w) for w in pos_weight]

    def call(self, y_true, y_pred):
        eps = keras.config.epsilon()
        y_pred = ops.clip(y_pred, eps, 1 - eps)
        w = ops.convert_to_tensor(self.pos_weight, dtype=y_pred.dtype)
        y_true = ops.cast(y_true, y_pred.dtype)
        loss = -(w * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))
        return ops.mean(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight}


def positive_weights(labels: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """sqrt(negatives / positives) per genre, capped: rare genres count more, but a genre
    with three examples must not drown the others."""
    pos = labels.sum(axis=0).astype(np.float64)
    neg = len(labels) - pos
    return np.clip(np.sqrt(neg / np.maximum(pos, 1.0)), 1.0, cap)


def make_loss(name: str, labels: np.ndarray) -> keras.losses.Loss:
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "weighted-bce":
        return WeightedBCE(positive_weights(labels))
    if name == "focal":
        return keras.losses.BinaryFocalCrossentropy(gamma=2.0)
    raise ValueError(f"loss must be one of {LOSSES}")
