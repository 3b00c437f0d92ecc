"""An uploaded poster -> its genres, shown as the page shows them. No Streamlit.

The model is :class:`models.poster_model.PosterModel`, the object every front end predicts
with; what is here is the page's own: its words for a rejected file, its result, its
thumbnail."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from anigenre.core.errors import InvalidImage
from PIL import Image, ImageOps

if TYPE_CHECKING:
    from anigenre.models.poster_model import PosterModel

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


def too_large_message(name: str, size: int, limit_mb: int) -> str:
    """One line for an upload over the page's limit (Streamlit's own refusal covers the
    browser; this covers a server started with a larger ``server.maxUploadSize``)."""
    return (
        f"{name} is {size / 2**20:.1f} MB, over this page's {limit_mb} MB limit; posters "
        f"are a few MB: upload a smaller {ACCEPTED} file."
    )


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


def predict_upload(model: PosterModel, name: str, data: bytes) -> PosterResult:
    """Genres of one upload by the server's model (``models.poster_model``, the API's own);
    a bad file raises InvalidImage (see :func:`upload_message`)."""
    start = time.perf_counter()
    probs = model.probabilities(data)
    order = np.argsort(-probs, kind="mergesort")
    scores = tuple(
        GenreScore(model.genres[i], float(probs[i]), float(model.thresholds[i])) for i in order
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
