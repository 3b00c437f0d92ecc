"""Run a backbone over image files in batches, decoding in parallel while it computes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from core.errors import DataError
from core.loader import decode_file, iter_batches, iter_decoded


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
    model: keras.Model,
    paths: Sequence[Path],
    size: tuple[int, int],
    policy: str,
    *,
    max_pixels: int,
    flip: bool = False,
    batch_size: int = 32,
) -> np.ndarray:
    """Backbone outputs for ``paths`` (optionally horizontally flipped), in order."""
    decoded = iter_decoded(paths, lambda p: decode_file(p, size, policy, max_pixels))
    out = []
    for batch in iter_batches(decoded, batch_size, size):
        if batch.errors:
            raise DataError(f"dataset image(s) cannot be decoded: {batch.errors}")
        x = batch.arrays[:, :, ::-1] if flip else batch.arrays
        out.append(np.asarray(model.predict_on_batch(x.astype(np.float32))))
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)
