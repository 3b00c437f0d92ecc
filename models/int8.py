"""Int8 feature networks, for training and for a model built on them.

Two kinds. ``imagenet-int8``: a file in the weights dir cut after its pooling (below).
``ptq``: our own float backbone quantized to full integer after training's features are
chosen (``quantize``), calibrated on training posters; the head trains on the features it
computes, so training and serving see the same numbers.

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
import dataclasses
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from anigenre.core.atomic import write_bytes_atomic
from anigenre.core.errors import ConfigError, DataError
from anigenre.core.loader import decode_file, iter_decoded
from anigenre.models.manifest import Manifest

POOL_TENSOR = "GlobalPool/Mean"  # the pooled features' tensor name ends so in the file
IMAGENET_INT8, PTQ = "imagenet-int8", "ptq"  # the two kinds of int8 features file
# Calibration posters for our own quantization: the first of the training posters by
# sha256. 100 and 200 gave features within cosine 0.999 of each other (bench/int8.py);
# each costs a float forward pass inside the converter.
CALIBRATION_POSTERS = 200
QUANTIZED_DIR = "int8"  # under the data dir: quantized networks, named by what made them


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


def network_bytes(path: Path, kind: str = IMAGENET_INT8) -> bytes:
    """The features network a file holds: an ImageNet int8 file cut after its pooling, or
    our own quantized backbone as it is (its only output already is the features)."""
    return Path(path).read_bytes() if kind == PTQ else extractor_bytes(path)


def quantize(backbone, images: np.ndarray) -> bytes:
    """``backbone`` (a float Keras model: 0..255 RGB in, pooled features out) quantized to
    full integer: int8 weights and activations, uint8 pixels in (the input scaling is the
    first quantized op), float32 features out. ``images``: (n, h, w, 3) calibration posters
    at the backbone's input size; the activation ranges are theirs."""
    import tensorflow as tf

    # The input's range is calibrated too: one pixel at 0 and one at 255 make it the whole
    # 0..255, so the network takes pixels as they are (scale 1, zero point 0), never
    # clipping a brighter poster than the calibration posters were.
    images = np.array(images, dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255

    def representative():
        for image in images:
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(backbone)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    # The converter prints the traced signature to stdout, which would land in our output.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def calibration_set(shas: Sequence[str], n: int = CALIBRATION_POSTERS) -> list[int]:
    """Indices of the calibration posters among ``shas`` (the training posters): the first
    ``n`` by sha256, so the same training set always gives the same network."""
    return sorted(range(len(shas)), key=lambda i: shas[i])[:n]


def quantized_weights(
    backbone,
    weights,
    paths: Sequence[Path],
    shas: Sequence[str],
    size: tuple[int, int],
    policy: str,
    *,
    data_dir: Path,
    max_pixels: int,
    taps: tuple[str, ...] = (),
):
    """``weights`` (a ``models.backbones.WeightsSource``) with the full-integer quantization
    of ``backbone`` as its features network, calibrated on training posters ``paths``. The
    network is kept under ``<data>/int8/``, named by what made it (the float weights, input,
    taps and calibration posters), so training again on the same posters reuses it and
    the feature cache (keyed by its sha256) stays valid."""
    chosen = calibration_set(shas)
    recipe = {
        "weights": weights.features_id,
        "size": list(size),
        "policy": policy,
        "taps": list(taps),
        "calibration": sorted(shas[i] for i in chosen),
    }
    name = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(data_dir) / QUANTIZED_DIR / f"{name}.tflite"
    if not path.exists():
        images = _decoded([paths[i] for i in chosen], size, policy, max_pixels)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, quantize(backbone, images))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return dataclasses.replace(
        weights,
        features=path,
        features_sha256=digest,
        features_kind=PTQ,
        calibration=len(chosen),
    )


def _decoded(paths: Sequence[Path], size, policy: str, max_pixels: int) -> np.ndarray:
    results = list(
        iter_decoded(paths, lambda p: decode_file(p, size, policy, max_pixels), workers=4)
    )
    bad = [f"{r.path} ({r.error})" for r in results if not r.ok]
    if bad:
        raise DataError(f"calibration poster(s) cannot be decoded: {'; '.join(bad[:5])}")
    return np.stack([r.array for r in results])


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
    return data if features.kind == PTQ else extractor_bytes(features.path)
