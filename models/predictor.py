"""Inference from an artifact: the manifest's size, resize policy, views and thresholds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from core.loader import Batch, decode_file, iter_batches, iter_decoded
from models.registry import vocabulary_of


@dataclass
class Predictor:
    model: keras.Model
    manifest: dict
    max_pixels: int = 40_000_000
    batch_size: int = 32
    workers: int = 4

    def __post_init__(self) -> None:
        self.vocab = vocabulary_of(self.manifest)
        self.size = tuple(self.manifest["input_size"])
        self.policy = self.manifest["resize_policy"]
        self.tta = tuple(self.manifest.get("tta", ()))
        self.thresholds = np.array([self.manifest["thresholds"][g] for g in self.vocab.genres])

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 at the manifest's size -> (n, genres) probabilities."""
        if len(images) == 0:
            return np.zeros((0, len(self.vocab)), np.float32)
        x = images.astype(np.float32)
        outs = [np.asarray(self.model.predict_on_batch(x))]
        if "flip" in self.tta:
            outs.append(np.asarray(self.model.predict_on_batch(x[:, :, ::-1])))
        return np.mean(outs, axis=0).astype(np.float32)

    def predict_files(self, paths: Iterable[str | Path]) -> Iterator[tuple[Batch, np.ndarray]]:
        """Decode in parallel while the model runs; each batch with its probabilities
        (rows only for the files that decoded: ``batch.ok`` says which)."""
        decoded = iter_decoded(
            paths,
            lambda p: decode_file(p, self.size, self.policy, self.max_pixels),
            workers=self.workers,
            prefetch=self.batch_size * 2,
        )
        for batch in iter_batches(decoded, self.batch_size, self.size):
            yield batch, self.predict_arrays(batch.arrays)
