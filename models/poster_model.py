"""One trained model, ready for posters: files, PIL images or raw bytes -> the rows a bulk
run writes for them.

Every front end that predicts a handful of posters holds one of these: the Python API
(``anigenre.load_model``) and the web page's Try page. It sits on a
:class:`models.predictor.Predictor`, so the engine (LiteRT or Keras), the decode and the
thresholds are the bulk run's own, and a row here equals that run's row for the same file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from anigenre.core.errors import InvalidImage
from anigenre.core.images import decode_image
from anigenre.core.loader import iter_decoded
from anigenre.core.predictions import prediction_table
from PIL import Image

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from anigenre.models.predictor import Predictor

# What ``predict`` takes: a file's path, an image already in memory, or a file's bytes.
Poster: TypeAlias = str | os.PathLike | Image.Image | bytes | bytearray | memoryview

DEFAULT_TOP_K = 4  # as `anigenre predict --top-k`
# Modes PNG stores as they are; any other (CMYK, YCbCr, LAB, HSV, F) is made RGB first,
# which is what decoding such a file would have done to it.
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


@dataclass(frozen=True)
class _Item:
    """One input made ready: its label in the ``path`` column, and its bytes or why not."""

    path: str
    sha256: str | None
    data: bytes | None
    error: str | None


class PosterModel:
    """A loaded model that predicts posters given as paths, PIL images or bytes.

    Build it with :func:`anigenre.load_model` (or around any predictor). Calls may come
    from several threads (the web server's sessions): the network runs one call at a
    time, since Keras models are not documented as safe to call concurrently.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.manifest = predictor.manifest
        self.model_id: str = _field(predictor.manifest, "model_id")
        self.genres: tuple[str, ...] = tuple(predictor.vocab.genres)
        self.thresholds = np.asarray(predictor.thresholds, dtype=np.float64)
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        """What runs the network: ``litert`` or ``keras``."""
        return self.predictor.engine.name

    @property
    def backbone(self) -> str:
        return _field(self.manifest, "backbone")

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) every poster is resized to."""
        return tuple(self.predictor.size)

    def __repr__(self) -> str:
        return f"PosterModel({self.model_id!r}, engine={self.engine!r})"

    def one_at_a_time(self) -> PosterModel:
        """This model for single posters: the same network, never padded to a batch.

        Keras runs a short batch padded to the batch size (one traced shape); for one
        upload at a time that would cost a batch's forward pass each. LiteRT never pads."""
        return PosterModel(dataclasses.replace(self.predictor, batch_size=1))

    def warm(self) -> None:
        """Run the network once, so the first real poster does not pay for its set-up."""
        h, w = self.input_size
        with self._lock:
            self.predictor.predict_arrays(np.zeros((1, h, w, 3), np.uint8))

    def probabilities(self, poster: Poster) -> np.ndarray:
        """One poster's probability per genre (in :attr:`genres` order). A file or bytes
        that is no usable image raises :class:`InvalidImage`; an unreadable path, OSError."""
        array = self._decode(_bytes_of(poster, 0))
        with self._lock:
            return self.predictor.predict_arrays(array[None])[0]

    def predict(self, posters: Iterable[Poster], *, top_k: int = DEFAULT_TOP_K) -> pd.DataFrame:
        """One row per poster, in input order, with the columns of a bulk run's
        predictions table (``core.schemas.predictions_schema``, less the ``run_id`` of a
        run's folder): model_id, path, sha256, status, error, ``p_<genre>``..., top_genres,
        predicted, predicted_at.

        ``path`` is a file's absolute path, as a run writes it; a PIL image is labelled
        ``<image N>`` and bytes ``<bytes N>``, N its position in ``posters``. ``sha256``
        is that of the file or bytes (None for a PIL image). A poster that cannot be read
        or decoded is a row with status ``error`` and the run's reason (``corrupt: ...``,
        ``unreadable: ...``); anything that is no poster at all raises TypeError.
        """
        return self.predict_table(posters, top_k=top_k).to_pandas()

    def predict_table(self, posters: Iterable[Poster], *, top_k: int = DEFAULT_TOP_K) -> pa.Table:
        """:meth:`predict` as an Arrow table in the predictions schema."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k}")
        items = [_ready(poster, i) for i, poster in enumerate(posters)]
        rows: list[dict[str, Any]] = []
        for chunk in _batched(self._decoded(items), self.predictor.batch_size):
            good = [array for _, array, _ in chunk if array is not None]
            if good:
                with self._lock:
                    probs = iter(self.predictor.predict_arrays(np.stack(good)))
            for item, array, error in chunk:
                outcome = {"probs": next(probs)} if array is not None else {"error": error}
                rows.append({"path": item.path, "sha256": item.sha256, **outcome})
        return prediction_table(
            model_id=self.model_id,
            vocab=self.predictor.vocab,
            thresholds=self.thresholds,
            top_k_n=top_k,
            items=rows,
            now=dt.datetime.now(dt.UTC),
        )

    def _decode(self, data: bytes) -> np.ndarray:
        p = self.predictor
        return decode_image(data, p.size, p.policy, max_pixels=p.max_pixels)

    def _decoded(
        self, items: Sequence[_Item]
    ) -> Iterator[tuple[_Item, np.ndarray | None, str | None]]:
        """Each item with its array or its error, decoded in parallel, in input order."""

        def decode(position: int):
            item = items[position]
            if item.error is not None:
                return item, None, item.error
            try:
                return item, self._decode(item.data), None
            except InvalidImage as exc:
                return item, None, str(exc)

        batch = self.predictor.batch_size
        yield from iter_decoded(
            range(len(items)), decode, workers=self.predictor.workers, prefetch=batch * 2
        )


def _ready(poster: Poster, position: int) -> _Item:
    """A poster's label and bytes; a file that cannot be read gets the run's reason."""
    if isinstance(poster, Image.Image):
        return _Item(f"<image {position}>", None, _bytes_of(poster, position), None)
    if isinstance(poster, bytes | bytearray | memoryview):
        data = _bytes_of(poster, position)
        return _Item(f"<bytes {position}>", _sha256(data), data, None)
    if not isinstance(poster, str | os.PathLike):
        _bytes_of(poster, position)  # raises the TypeError that says what to give
    path = Path(poster)
    # The run's own form of a path (jobs.runs.plan.discover), so rows join on it.
    path = path.resolve() if path.exists() else path.absolute()
    shown = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _Item(shown, None, None, f"unreadable: {exc.strerror or exc}")
    return _Item(shown, _sha256(data), data, None)


def _bytes_of(poster: Poster, position: int) -> bytes:
    """The bytes to decode: a file's (OSError if it cannot be read), an image's as PNG."""
    if isinstance(poster, Image.Image):
        return _png(poster)
    if isinstance(poster, bytes | bytearray | memoryview):
        return bytes(poster)
    if isinstance(poster, str | os.PathLike):
        return Path(poster).read_bytes()
    raise TypeError(
        f"poster {position} is a {type(poster).__name__}; give a path, a PIL image or bytes"
    )


def _png(image: Image.Image) -> bytes:
    """An in-memory image as lossless PNG, so it meets the same decode (and the same
    checks of size and shape) as a file: the pixels the model sees are the same."""
    if image.mode not in _PNG_MODES:
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # fast: the bytes never leave memory
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


def _field(manifest: Any, name: str) -> Any:
    """A manifest's field, whether it is a dict or a typed object."""
    return manifest[name] if isinstance(manifest, dict) else getattr(manifest, name)
