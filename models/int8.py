"""The int8 MobileNetV2 as a feature extractor, for training and for a model built on it.

The shared ``tf2_mobilenet_v2_1.0_224_ptq.tflite`` is Google's post-training-quantized
MobileNetV2 1.0 with its ImageNet classifier on top. Cut after the global pooling, it is a
uint8-in, int8-features-out network that runs any poster size (it is convolutional up to a
global mean) in one image per call at ~212 images/s at 320x224 on two threads, 2.5x the
float32 LiteRT network. Training reads its features (the feature cache keys them by
engine), so the head learns the numbers it will be served.

Making the extractor needs TensorFlow; running it does not. ``models.export`` writes it
beside the head of a model trained on its features.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
from anigenre.core.errors import ConfigError
from anigenre.models.manifest import Manifest

POOL_TENSOR = "GlobalPool/Mean"  # the pooled features' tensor name ends so in the file


def extractor_bytes(source: Path) -> bytes:
    """``source`` cut after its global pooling: the flatbuffer whose only output is the
    (n, 1, 1, 1280) int8 features. Deterministic, so the same file gives the same bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    try:
        model = flatbuffer_utils.read_model(str(source))
    except Exception as exc:  # noqa: BLE001 - the flatbuffer reader raises many kinds
        raise ConfigError(f"{source} is not a LiteRT model ({type(exc).__name__})") from None
    graph = model.subgraphs[0]
    pooled = [
        i
        for i, t in enumerate(graph.tensors)
        if POOL_TENSOR in _text(t.name) and t.shape is not None and len(t.shape) == 4
    ]
    producers = [i for i, op in enumerate(graph.operators) if pooled and pooled[0] in op.outputs]
    if not pooled or not producers:
        raise ConfigError(f"{source} has no '{POOL_TENSOR}' features tensor to cut at")
    graph.operators = graph.operators[: producers[0] + 1]
    graph.outputs = np.array(pooled[:1], dtype=np.int32)
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")


def features_source(manifest: Manifest) -> Path | None:
    """The int8 file a model's head was trained on, when it was (None: a float model)."""
    features = manifest.weights.features
    return features.path if features else None


def checked_extractor(manifest: Manifest) -> bytes:
    """The extractor of an int8-featured model, made from the very file (checked by hash)
    its head was trained on, so an artifact exported on first use cannot pair its head
    with other features."""
    features = manifest.weights.features
    if features is None:
        raise ConfigError(f"model {manifest.model_id} was not trained on int8 features")
    try:
        data = features.path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"the int8 features file {features.path} cannot be read ({exc.strerror or exc})"
        ) from None
    if hashlib.sha256(data).hexdigest() != features.sha256:
        raise ConfigError(f"{features.path} is not the int8 file this model was trained on")
    return extractor_bytes(features.path)
