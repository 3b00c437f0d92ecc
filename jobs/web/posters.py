"""An uploaded poster -> its genres, with the model the server loaded once. No Streamlit."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

import numpy as np
from anigenre.core.errors import InvalidImage
from anigenre.core.images import decode_image
from PIL import Image, ImageOps

ACCEPTED = "JPEG, PNG, WebP, GIF or BMP"
# core.images' reasons, as a person reads them.
REASONS = {
    "empty": "is empty (zero bytes)",
    "not-an-image": "is not an image",
    "corrupt": "is truncated or corrupt",
    "too-large": "is too large",
    "decompression-bomb": "looks like a decompression bomb",
    "unsupported-format": "is in a format the model does not read",
    "absurd-size": "has a shape no poster has",
}
DETAIL_CHARS = 160


def upload_message(name: str, exc: InvalidImage) -> str:
    """One line for a rejected upload: what is wrong with it and what to upload instead."""
    what = REASONS.get(exc.reason, f"cannot be used ({exc.reason})")
    detail = " ".join(str(exc.detail).split())[:DETAIL_CHARS]
    return f"{name} {what}" + (f" ({detail})" if detail else "") + f"; upload a {ACCEPTED} poster."


@dataclass(frozen=True)
class GenreScore:
    genre: str
    probability: float
    threshold: float

    @property
    def passes(self) -> bool:
        # The same rule as core.predictions.above_thresholds: at or over.
        return self.probability >= self.threshold


@dataclass(frozen=True)
class PosterResult:
    name: str
    scores: tuple[GenreScore, ...]  # every genre, most probable first
    seconds: float  # decode + predict, for the page's footnote and the benchmark

    def top(self, k: int) -> tuple[GenreScore, ...]:
        return self.scores[:k]

    @property
    def passing(self) -> list[str]:
        return [s.genre for s in self.scores if s.passes]


class PosterModel:
    """A :class:`models.predictor.Predictor` for one poster at a time.

    One image per call, not the predictor's padded batch of 32: a single upload then
    costs one forward pass, and the shape never changes, so the graph is traced once
    (by :meth:`warm`) rather than on the first upload. (Under Streamlit, see also
    ``jobs.web.context.keep_keras_state``.)
    """

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.manifest = predictor.manifest
        self.model_id: str = predictor.manifest["model_id"]
        self.genres: tuple[str, ...] = tuple(predictor.vocab.genres)
        self.thresholds = np.asarray(predictor.thresholds, dtype=np.float64)
        # Sessions are threads of one server; Keras models are not documented as safe to
        # call concurrently, and two cores gain nothing from trying.
        self._lock = threading.Lock()

    def warm(self) -> None:
        h, w = self.predictor.size
        with self._lock:
            self.predictor.predict_arrays(np.zeros((1, h, w, 3), np.uint8))

    def predict(self, name: str, data: bytes) -> PosterResult:
        """Genres of one upload; a bad file raises InvalidImage (see :func:`upload_message`)."""
        start = time.perf_counter()
        array = decode_image(
            data,
            self.predictor.size,
            self.predictor.policy,
            max_pixels=self.predictor.max_pixels,
        )
        with self._lock:
            probs = self.predictor.predict_arrays(array[None])[0]
        order = np.argsort(-probs, kind="mergesort")
        scores = tuple(
            GenreScore(self.genres[i], float(probs[i]), float(self.thresholds[i])) for i in order
        )
        return PosterResult(name, scores, time.perf_counter() - start)


def thumbnail(data: bytes, box: tuple[int, int] = (240, 340)) -> bytes | None:
    """A small RGB JPEG of an image already accepted by :func:`decode_image` (so its size
    is checked), letting the page send kilobytes rather than the upload. None if Pillow
    cannot draw it."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", box)  # JPEG: decode at a reduced scale, much faster
            img = ImageOps.exif_transpose(img)
            img.thumbnail(box)
            if img.mode in ("RGBA", "LA", "PA", "P"):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="JPEG", quality=85)
            return buf.getvalue()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None
