"""The int8 MobileNetV2 as a feature extractor, and the LiteRT export of a model built on it.

The shared ``tf2_mobilenet_v2_1.0_224_ptq.tflite`` is Google's post-training-quantized
MobileNetV2 1.0 with its ImageNet classifier on top. Cut after the global pooling, it is a
uint8-in, int8-features-out network that runs any poster size (it is convolutional up to a
global mean) in one image per call at ~212 images/s at 320x224 on two threads, 2.5x the
float32 LiteRT network. Training reads its features (the feature cache keys them by
engine), so the head learns the numbers it will be served.

Making the extractor and exporting the head need TensorFlow; running them does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
from anigenre.core.errors import ConfigError

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


def features_source(manifest: dict) -> Path | None:
    """The int8 file a model's head was trained on, when it was (None: a float model)."""
    features = (manifest.get("weights") or {}).get("features")
    return Path(features["path"]) if features else None


def export_files(model, manifest: dict) -> dict[str, bytes]:
    """The LiteRT files of an int8-featured model: the extractor and the float head.

    The extractor is made from the very file (checked by hash) the head was trained on,
    so an artifact exported on first use cannot pair its head with other features."""
    from anigenre.models.engines import FEATURES_FILE
    from anigenre.models.registry import LITERT_FILE, convert_to_litert

    features = manifest["weights"]["features"]
    source = Path(features["path"])
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"the int8 features file {source} cannot be read ({exc.strerror or exc})"
        ) from None
    if hashlib.sha256(data).hexdigest() != features["sha256"]:
        raise ConfigError(f"{source} is not the int8 file this model was trained on")
    head = model.layers[-1]  # models.train.compose: image -> backbone -> head
    return {FEATURES_FILE: extractor_bytes(source), LITERT_FILE: convert_to_litert(head)}
