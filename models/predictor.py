"""Inference from an artifact: the manifest's size, resize policy, views and thresholds.

The network runs on an engine (:mod:`models.engines`); a Keras model given as ``model``
runs on the Keras engine, as it always has. Nothing here imports TensorFlow, so a
LiteRT predictor never loads it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.images import DEFAULT_MAX_PIXELS
from core.loader import Batch, decode_file, iter_batches, iter_decoded
from models.engines import KerasEngine, LiteRTEngine
from models.registry import vocabulary_of


@dataclass
class Predictor:
    model: Any  # a keras.Model, or an engine (models.engines: a ``run(batch)`` method)
    manifest: dict
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 32
    workers: int = 4

    def __post_init__(self) -> None:
        self.vocab = vocabulary_of(self.manifest)
        self.size = tuple(self.manifest["input_size"])
        self.policy = self.manifest["resize_policy"]
        self.tta = tuple(self.manifest.get("tta", ()))
        self.thresholds = np.array([self.manifest["thresholds"][g] for g in self.vocab.genres])
        engine = isinstance(self.model, KerasEngine | LiteRTEngine)
        self.engine = self.model if engine else KerasEngine(self.model)

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 at the manifest's size -> (n, genres) probabilities."""
        n = len(images)
        if n == 0:
            return np.zeros((0, len(self.vocab)), np.float32)
        # Keras: pad a short batch to full size, since one input shape means the graph is
        # traced once instead of again for every odd-sized last batch. LiteRT re-sizes its
        # tensors in milliseconds, far less than computing the padding would cost.
        rows = max(n, self.batch_size) if self.engine.pads_batches else n
        x = np.zeros((rows, *images.shape[1:]), np.float32)
        x[:n] = images
        outs = [self.engine.run(x)[:n]]
        if "flip" in self.tta:
            outs.append(self.engine.run(x[:, :, ::-1])[:n])
        return np.mean(outs, axis=0).astype(np.float32)

    def predict_files(
        self,
        paths: Iterable[str | Path],
        shas: Iterable[str | None] | None = None,
        read: Callable[[str], bytes] | None = None,
    ) -> Iterator[tuple[Batch, np.ndarray]]:
        """Decode in parallel while the model runs; each batch with its probabilities
        (rows only for the files that decoded: ``batch.ok`` says which). With ``shas``,
        a file whose content no longer matches its hash becomes an error. ``read``: how
        to get a file's bytes (an object store's reader); default, the local file."""
        items = zip(paths, shas, strict=True) if shas is not None else ((p, None) for p in paths)
        decoded = iter_decoded(
            items,
            lambda item: decode_file(
                item[0], self.size, self.policy, self.max_pixels, item[1], read=read
            ),
            workers=self.workers,
            prefetch=self.batch_size * 2,
        )
        for batch in iter_batches(decoded, self.batch_size, self.size):
            yield batch, self.predict_arrays(batch.arrays)
