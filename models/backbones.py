"""Backbones: the paper's ResNet50, InceptionV3 and custom CNN, plus MobileNetV2.

Each builds a Keras model from a 0..255 RGB image of any poster-like size to a pooled
feature vector, with its own input scaling inside, so a saved model needs nothing but
decoded pixels. No I/O here beyond reading a weights file the caller names.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
from anigenre.core.errors import ConfigError
from anigenre.models.layers import CaffePreprocess

REFERENCE_SIZE = (224, 224)  # the size local ImageNet weight files were exported at


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: tuple[int, int]  # (height, width)
    min_size: int
    build: Callable[..., keras.Model]  # keras.applications-style constructor
    scaling: str  # "tf" ([-1, 1]), "caffe", or "unit" ([0, 1])
    pretrained: bool = True  # False: no ImageNet weights exist (the custom CNN)
    local_file: str | None = None  # the file name in the weights dir, when there is one
    # An int8 LiteRT file in the weights dir that the features come from (models.int8);
    # the Keras network is then its float original, the reference engine.
    features_file: str | None = None
    # Inner layers whose global-average-pooled outputs are appended to the features.
    taps: tuple[str, ...] = ()
    # Another backbone run on the same scaled input, its pooled features appended.
    companion: str | None = None
    # Served as our own full-integer quantization of this float network (models.int8),
    # made by training from its training posters; the Keras network is the reference.
    quantize: bool = False


def _mobilenet(alpha: float) -> Callable[..., keras.Model]:
    def build(**kw) -> keras.Model:
        return keras.applications.MobileNetV2(alpha=alpha, **kw)

    return build


def custom_cnn(input_shape, include_top=False, weights=None, pooling="avg", **_) -> keras.Model:
    """The paper's small CNN: Conv2D 32-32-32-64 with max pooling; the dense part is our head."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((32, 32, 32, 64)):
        x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="custom_cnn")


# Beside the last layer's 1280 features, the pooled 320 of block 16's projection (before
# the final 1x1 expansion): bench/recipe.py, five grouped splits. MobileNetV2 is fully
# convolutional: poster-shaped input (0.7 wide per unit of height) keeps detail a square
# stretch throws away; bench/quality.py measured +0.02 macro mAP, micro mAP and P@3 on
# average over five grouped splits.
_MOBILENET_V2_1 = BackboneSpec(
    "mobilenet_v2_1.0",
    (320, 224),
    32,
    _mobilenet(1.0),
    "tf",
    local_file="mobilenet_v2_1.0_224.weights.h5",
    taps=("block_16_project_BN",),
)

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet50", (224, 224), 32, keras.applications.ResNet50, "caffe"),
        BackboneSpec("inception_v3", (299, 299), 75, keras.applications.InceptionV3, "tf"),
        BackboneSpec(
            "mobilenet_v2_0.35",
            (320, 224),
            32,
            _mobilenet(0.35),
            "tf",
            local_file="mobilenet_v2_0.35_224_no_top.weights.h5",
        ),
        _MOBILENET_V2_1,
        # The same network, its features from the int8 post-training-quantized file: the
        # LiteRT engine runs it 2.5x faster than float32 (docs/benchmarks.md).
        dataclasses.replace(
            _MOBILENET_V2_1,
            name="mobilenet_v2_1.0_int8",
            taps=(),
            features_file="tf2_mobilenet_v2_1.0_224_ptq.tflite",
        ),
        # The default: MobileNetV2 1.0 with block 16, and beside it the 1280 pooled
        # features of MobileNetV2 0.35 on the same input, a network of a fifth of the 1.0's
        # multiply-adds: +0.015 P@3 over five grouped splits (bench/recipe.py).
        dataclasses.replace(
            _MOBILENET_V2_1, name="mobilenet_v2_1.0_with_0.35", companion="mobilenet_v2_0.35"
        ),
        # The same pair quantized to int8 after training chose its posters (bench/int8.py).
        dataclasses.replace(
            _MOBILENET_V2_1,
            name="mobilenet_v2_1.0_with_0.35_int8",
            companion="mobilenet_v2_0.35",
            quantize=True,
        ),
        # MobileNetV2 1.0 alone (block 16 kept), our int8 quantization: no 0.35 beside it.
        # 1.23x the pair's network rate, 1.10x end to end (bench/predict.py). Against the
        # default recipe on the lockbox macro mAP -0.028, micro AP -0.005, P@3 -0.019; on
        # the five splits' MAL-mapped posters +0.029 / +0.028 / +0.013 (bench/transfer.py).
        dataclasses.replace(_MOBILENET_V2_1, name="mobilenet_v2_1.0_ptq_int8", quantize=True),
        BackboneSpec("custom_cnn", (317, 230), 16, custom_cnn, "unit", pretrained=False),
    )
}


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "imagenet" | "file" | "none"
    path: Path | None = None
    sha256: str | None = None
    features: Path | None = None  # the int8 LiteRT file the features come from, if any
    features_sha256: str | None = None
    companion: WeightsSource | None = None  # the companion backbone's, if the spec has one
    features_kind: str = "imagenet-int8"  # or "ptq": our own quantization (models.int8)
    calibration: int | None = None  # ptq: how many training posters set its ranges

    def describe(self) -> dict:
        out = {
            "source": self.kind,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
        }
        if self.features:
            out["features"] = {"path": str(self.features), "sha256": self.features_sha256}
            if self.features_kind != "imagenet-int8":
                out["features"] |= {"kind": self.features_kind, "calibration": self.calibration}
        if self.companion:
            out["companion"] = self.companion.describe()
        return out

    @property
    def features_id(self) -> str:
        """What the features depend on: the file(s) they are computed with."""
        own = self.features_sha256 or self.sha256 or self.kind
        return f"{own}+{self.companion.features_id}" if self.companion else own


def spec_for(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone '{name}'; choose from {', '.join(BACKBONES)}"
        ) from None


def resolve_weights(spec: BackboneSpec, choice: str, weights_dir: Path) -> WeightsSource:
    """``auto`` | ``imagenet`` | ``none`` | a path. ``auto`` prefers a local file, then the
    Keras cache/download, so offline machines work when the file is there. A backbone with
    int8 features needs its int8 file in ``weights_dir`` too; the choice is then the float
    reference's weights."""
    source = _resolve(spec, choice, weights_dir)
    if spec.companion:
        # A weights file given for the main network says nothing about the companion's.
        other = choice if choice in ("auto", "imagenet", "none") else "auto"
        companion = _resolve(spec_for(spec.companion), other, weights_dir)
        source = dataclasses.replace(source, companion=companion)
    if not spec.features_file:
        return source
    int8 = Path(weights_dir) / spec.features_file
    if source.kind == "none":
        raise ConfigError(f"{spec.name} reads ImageNet int8 features; it has no --weights none")
    if not int8.exists():
        raise ConfigError(
            f"{spec.name} needs the int8 file {int8}; put it there (see the weights README) "
            "or train mobilenet_v2_1.0"
        )
    return dataclasses.replace(source, features=int8, features_sha256=_file_source(int8).sha256)


def _resolve(spec: BackboneSpec, choice: str, weights_dir: Path) -> WeightsSource:
    if choice == "none" or not spec.pretrained:
        if choice not in ("none", "auto"):
            raise ConfigError(f"{spec.name} has no pretrained weights; use --weights none")
        return WeightsSource("none")
    if choice == "auto":
        local = weights_dir / spec.local_file if spec.local_file else None
        if local and local.exists():
            return _file_source(local)
        return WeightsSource("imagenet")
    if choice == "imagenet":
        return WeightsSource("imagenet")
    path = Path(choice)
    if not path.exists():
        raise ConfigError(f"weights file {path} does not exist; use a path, imagenet, none or auto")
    return _file_source(path)


def _file_source(path: Path) -> WeightsSource:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return WeightsSource("file", path, digest)


def build_backbone(
    spec: BackboneSpec,
    size: tuple[int, int],
    weights: WeightsSource,
    taps: tuple[str, ...] | None = None,
) -> keras.Model:
    """0..255 RGB (size) -> pooled features, with the backbone's scaling as the first layer,
    followed by the pooled outputs of ``taps`` (None: the spec's own)."""
    if min(size) < spec.min_size:
        raise ConfigError(f"{spec.name} needs inputs of at least {spec.min_size} px a side")
    shape = (*size, 3)
    core = _tapped(_core(spec, shape, weights), spec.taps if taps is None else taps)
    inputs = keras.Input(shape, name="image")
    x = _scaling(spec.scaling)(inputs)
    features = core(x)
    if spec.companion:
        other = spec_for(spec.companion)
        if other.scaling != spec.scaling:
            raise ConfigError(f"{spec.name}'s companion {other.name} scales its input otherwise")
        if weights.companion is None and weights.kind != "none":
            # Never pretrained weights on one network and random ones on the other.
            raise ConfigError(f"{spec.name} needs its companion's weights (resolve_weights)")
        hint = f"put {other.local_file} in the weights dir or use --weights none"
        extra = _core(other, shape, weights.companion or WeightsSource("none"), hint)(x)
        features = keras.layers.Concatenate(name="with_companion")([features, extra])
    return keras.Model(inputs, features, name=f"{spec.name}_features")


def _core(
    spec: BackboneSpec,
    shape: tuple[int, int, int],
    weights: WeightsSource,
    offline_hint: str = "pass --weights PATH to a local file or --weights none",
) -> keras.Model:
    """``spec``'s network without its top, globally average-pooled, with ``weights``."""
    if weights.kind == "imagenet":
        try:
            return spec.build(
                include_top=False, weights="imagenet", input_shape=shape, pooling="avg"
            )
        except Exception as exc:  # noqa: BLE001 - Keras raises several kinds for a failed download
            raise ConfigError(
                f"could not get ImageNet weights for {spec.name} ({type(exc).__name__}); "
                f"offline, {offline_hint}"
            ) from None
    core = spec.build(include_top=False, weights=None, input_shape=shape, pooling="avg")
    if weights.kind == "file":
        _load_file_weights(spec, core, weights.path)
    return core


def _tapped(core: keras.Model, taps: tuple[str, ...]) -> keras.Model:
    """``core``'s pooled output followed by the pooled outputs of its layers ``taps``."""
    if not taps:
        return core
    pooled = []
    for name in taps:
        try:
            layer = core.get_layer(name)
        except ValueError:
            raise ConfigError(f"{core.name} has no layer '{name}' to take features from") from None
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"tap_{name}")(layer.output))
    joined = keras.layers.Concatenate(name="tapped_features")([core.output, *pooled])
    return keras.Model(core.input, joined, name=f"{core.name}_tapped")


def _scaling(kind: str) -> keras.layers.Layer:
    if kind == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_tf")
    if kind == "caffe":
        return CaffePreprocess(name="scale_caffe")
    return keras.layers.Rescaling(1 / 255.0, name="scale_unit")


def _load_file_weights(spec: BackboneSpec, target: keras.Model, path: Path) -> None:
    """Load a weights file exported at 224x224 into a backbone of any input size.

    Convolution weights do not depend on the input size, so the file is loaded into a
    reference model of the shape it was saved from, then copied layer by layer. Every
    weighted layer of the target must be found: a wrong file fails loudly here instead
    of training on random weights.
    """
    with h5py.File(path, "r") as fh:
        layer_names = set(fh["layers"].keys()) if "layers" in fh else set()
    has_top = "predictions" in layer_names
    reference = spec.build(include_top=has_top, weights=None, input_shape=(*REFERENCE_SIZE, 3))
    try:
        reference.load_weights(path)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{path} does not fit {spec.name}: {exc}") from None
    source = {layer.name: layer for layer in reference.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            raise ConfigError(f"{path} has no weights for layer {layer.name} of {spec.name}")
        layer.set_weights(source[layer.name].get_weights())
