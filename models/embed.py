"""Run a backbone over image files in batches, decoding in parallel while it computes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from anigenre.core.errors import DataError
from anigenre.core.loader import decode_file, iter_batches, iter_decoded

Extract = Callable[[np.ndarray], np.ndarray]  # (n, h, w, 3) 0..255 -> (n, features)

KERAS_FEATURES = "keras"
INT8_FEATURES = "litert-int8"
# Below this many images Keras is quicker than exporting the backbone to LiteRT first:
# exporting MobileNetV2 took 10.7 s on the loaded 2-core machine, what Keras spends on
# 600-1000 images.
LITERT_MIN_IMAGES = 1000


def features_engine(weights) -> str:
    """Which network's numbers a backbone's features are: part of their cache key. A float
    backbone's are Keras's, whether Keras or its LiteRT export (within ~1e-5) computes them."""
    return INT8_FEATURES if weights.features is not None else KERAS_FEATURES


def features_extractor(backbone: keras.Model, weights, images: int = 0) -> Extract:
    """The backbone's features for ``images`` images: from the int8 LiteRT file for a
    backbone with int8 features (so the head trains on what it will be served); else from
    the float backbone's LiteRT export when there are enough images to repay making it
    (3x Keras here) and the runtime is installed; else from the Keras network itself."""
    if features_engine(weights) == INT8_FEATURES:
        from anigenre.models.engines import Int8Features
        from anigenre.models.int8 import network_bytes

        return Int8Features(model_content=network_bytes(weights.features, weights.features_kind))
    if images >= LITERT_MIN_IMAGES and litert_runtime():
        from anigenre.models.engines import FloatNetwork
        from anigenre.models.export import convert_to_litert

        return FloatNetwork(model_content=convert_to_litert(backbone))
    return lambda x: np.asarray(backbone.predict_on_batch(x.astype(np.float32)))


def litert_runtime() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def decode_all(
    paths: Sequence[Path], size: tuple[int, int], policy: str, max_pixels: int, workers: int = 4
) -> np.ndarray:
    """Every path decoded to (n, h, w, 3) uint8; any failure is a DataError naming the files."""
    results = list(
        iter_decoded(paths, lambda p: decode_file(p, size, policy, max_pixels), workers=workers)
    )
    bad = [f"{r.path} ({r.error})" for r in results if not r.ok]
    if bad:
        raise DataError(f"{len(bad)} dataset image(s) cannot be decoded: {'; '.join(bad[:5])}")
    return np.stack([r.array for r in results]) if results else np.zeros((0, *size, 3), np.uint8)


def embed_files(
    extract: Extract,
    paths: Sequence[Path],
    size: tuple[int, int],
    policy: str,
    *,
    max_pixels: int,
    flip: bool = False,
    zoom: float = 1.0,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``extract``'s features of ``paths`` (optionally horizontally flipped, or zoomed:
    decoded ``zoom`` times larger and center-cropped back to ``size``), in order.
    ``on_progress(done, total)`` hears the start (0) and each batch."""
    big = tuple(round(n * zoom) for n in size)
    decoded = iter_decoded(paths, lambda p: decode_file(p, big, policy, max_pixels))
    top, left = (big[0] - size[0]) // 2, (big[1] - size[1]) // 2
    out = []
    if on_progress is not None:
        on_progress(0, len(paths))
    for batch in iter_batches(decoded, batch_size, big):
        if batch.errors:
            raise DataError(f"dataset image(s) cannot be decoded: {batch.errors}")
        x = batch.arrays[:, top : top + size[0], left : left + size[1]]
        x = x[:, :, ::-1] if flip else x
        out.append(np.asarray(extract(x), np.float32))
        if on_progress is not None:
            on_progress(sum(len(o) for o in out), len(paths))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
