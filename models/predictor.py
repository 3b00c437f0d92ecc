"""Inference from an artifact: the manifest's size, resize policy, views and thresholds.

The network runs on an engine (:mod:`models.engines`); a Keras model given as ``model``
runs on the Keras engine, as it always has. Nothing here imports TensorFlow, so a
LiteRT predictor never loads it."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anigenre.core.images import DEFAULT_MAX_PIXELS
from anigenre.core.loader import (
    Batch,
    Decoded,
    batch_of,
    decode_file,
    iter_batches,
    iter_decoded,
)
from anigenre.core.pools import PerProcessPool
from anigenre.models.engines import KerasEngine, LiteRTEngine
from anigenre.models.manifest import Manifest


@dataclass
class Predictor:
    model: Any  # a keras.Model, or an engine (models.engines: a ``run(batch)`` method)
    manifest: Manifest
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 32
    workers: int = 4
    # Decodes started ahead of the predict_files call that will want them, by (path, sha).
    _ahead: dict[tuple[str, str | None], Future] = field(
        default_factory=dict, init=False, repr=False
    )
    # Made on first use in each process (a forked worker child inherits no threads).
    _ahead_pool: PerProcessPool = field(init=False, repr=False)
    # The decoding threads, kept from one predict_files call (one chunk) to the next.
    _decode_pool: PerProcessPool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.vocab = self.manifest.vocabulary
        self.size = self.manifest.input_size
        self.policy = self.manifest.resize_policy
        self.tta = self.manifest.tta
        self.thresholds = np.array([self.manifest.thresholds[g] for g in self.vocab.genres])
        engine = isinstance(self.model, KerasEngine | LiteRTEngine)
        self.engine = self.model if engine else KerasEngine(self.model)
        self._ahead_pool = PerProcessPool(1, "decode-ahead")
        self._decode_pool = PerProcessPool(self.workers, "decode")

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 at the manifest's size -> (n, genres) probabilities."""
        n = len(images)
        if n == 0:
            return self._no_rows()
        # Keras: pad a short batch to full size, since one input shape means the graph is
        # traced once instead of again for every odd-sized last batch. LiteRT re-sizes its
        # tensors in milliseconds, far less than computing the padding would cost.
        rows = max(n, self.batch_size) if self.engine.pads_batches else n
        if self.engine.takes_uint8 and rows == n:
            x = np.asarray(images, np.uint8)  # the int8 network: pixels as they are
        else:
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

        def decode(item) -> Decoded:
            started = self._ahead.pop((str(item[0]), item[1]), None)
            if started is not None:
                return started.result()
            return decode_file(item[0], self.size, self.policy, self.max_pixels, item[1], read=read)

        if self.engine.streams and not self.tta:
            yield from self._streamed(items, decode)
            return
        decoded = iter_decoded(
            items, decode, prefetch=self.batch_size * 2, pool=self._decode_pool.get()
        )
        for batch in iter_batches(decoded, self.batch_size, self.size):
            yield batch, self.predict_arrays(batch.arrays)

    def _streamed(self, items, decode) -> Iterator[tuple[Batch, np.ndarray]]:
        """Int8 features: each poster runs through the network in the thread that decoded
        it, as it decodes; the head then takes a batch of features. The same numbers as
        :meth:`predict_arrays` on the batch (every image is its own invoke either way)."""

        def prepared(item) -> tuple[Decoded, np.ndarray | None]:
            decoded = decode(item)
            return decoded, decoded.array

        stream = self.engine.features.stream(items, prepared, window=self.batch_size * 2)
        with contextlib.closing(stream) as rows:  # stopped here, its threads stop too
            yield from self._headed(rows)

    def _headed(self, rows) -> Iterator[tuple[Batch, np.ndarray]]:
        while chunk := list(itertools.islice(rows, self.batch_size)):
            batch = batch_of([d for d, _ in chunk], self.size)
            features = [f for d, f in chunk if d.ok]
            probs = (
                self.engine.head(np.stack(features)).astype(np.float32)
                if features
                else self._no_rows()
            )
            yield batch, probs

    def _no_rows(self) -> np.ndarray:
        return np.zeros((0, len(self.vocab)), np.float32)

    def decode_ahead(
        self,
        paths: Iterable[str | Path],
        shas: Iterable[str | None],
        read: Callable[[str], bytes] | None = None,
    ) -> None:
        """Start decoding the first files the next ``predict_files`` call will ask for, so
        that between two chunks of a run the network does not sit idle while the next
        chunk's first batch decodes (measured: a run of 10 chunks of 60 lost ~10%)."""
        if len(self._ahead) > self.batch_size * 2:  # never asked for: let them go
            for started in self._ahead.values():
                started.cancel()
            self._ahead.clear()
        for path, sha in list(zip(paths, shas, strict=True))[: self.batch_size * 2]:
            self._ahead[(str(path), sha)] = self._ahead_pool.get().submit(
                decode_file, path, self.size, self.policy, self.max_pixels, sha, read=read
            )


def scoring_predictor(data_dir: Path, model: Any, manifest: Manifest, max_pixels: int) -> Predictor:
    """What ``evaluate`` scores a model with: the engine that serves it. A float model's
    LiteRT export gives Keras's numbers (within 1e-5), so its Keras network, the reference,
    scores it. A head on int8 features is served by its int8 network, whose numbers are not
    the float network's: it is scored on LiteRT, as it predicts (the figures training
    recorded are the int8 network's too)."""
    if manifest.weights.features is None:
        return Predictor(model, manifest, max_pixels)
    from anigenre.models.registry import litert_model_path

    path, manifest = litert_model_path(data_dir, manifest.model_id)
    return Predictor(LiteRTEngine(path), manifest, max_pixels)
