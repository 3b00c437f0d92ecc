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
_KINDS = (str, os.PathLike, Image.Image, bytes, bytearray, memoryview)

DEFAULT_TOP_K = 4  # as `anigenre predict --top-k`
# Modes PNG stores as they are; any other (CMYK, YCbCr, LAB, HSV, F) is made RGB first,
# which is what decoding such a file would have done to it.
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


@dataclass(frozen=True)
class _Decoded:
    """One poster made ready: its ``path`` and ``sha256`` columns, and its pixels or why not."""

    path: str
    sha256: str | None
    array: np.ndarray | None
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
        if isinstance(posters, str | bytes | os.PathLike | Image.Image):
            # A lone path would otherwise be read as one poster per character.
            raise TypeError("predict takes a list of posters: predict([poster])")
        posters = list(posters)
        for position, poster in enumerate(posters):
            _check(poster, position)
        rows: list[dict[str, Any]] = []
        for chunk in _batched(self._decoded(posters), self.predictor.batch_size):
            good = [d.array for d in chunk if d.array is not None]
            if good:
                with self._lock:
                    probs = iter(self.predictor.predict_arrays(np.stack(good)))
            for d in chunk:
                outcome = {"probs": next(probs)} if d.array is not None else {"error": d.error}
                rows.append({"path": d.path, "sha256": d.sha256, **outcome})
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

    def _decoded(self, posters: Sequence[Poster]) -> Iterator[_Decoded]:
        """Each poster read and decoded in a thread pool, in input order, with a bounded
        number in flight: a list of thousands of files is never all in memory."""

        # One PIL image may be given twice, and Pillow does not load one object from
        # two threads safely.
        pillow = threading.Lock()

        def decode(position: int) -> _Decoded:
            poster = posters[position]
            path = _label(poster, position)
            try:
                if isinstance(poster, Image.Image):
                    with pillow:
                        data = _png(poster)
                else:
                    data = _bytes_of(poster, position)
            except OSError as exc:  # the run's words for it (core.loader.decode_file)
                if isinstance(poster, Image.Image):  # opened lazily, its file was bad
                    return _Decoded(path, None, None, str(InvalidImage("corrupt", str(exc))))
                return _Decoded(path, None, None, f"unreadable: {exc.strerror or exc}")
            # An image in memory has no file whose bytes could be hashed.
            sha = None if isinstance(poster, Image.Image) else hashlib.sha256(data).hexdigest()
            try:
                return _Decoded(path, sha, self._decode(data), None)
            except InvalidImage as exc:
                return _Decoded(path, sha, None, str(exc))

        batch = self.predictor.batch_size
        yield from iter_decoded(
            range(len(posters)), decode, workers=self.predictor.workers, prefetch=batch * 2
        )


def _check(poster: Any, position: int) -> None:
    if not isinstance(poster, _KINDS):
        raise TypeError(
            f"poster {position} is a {type(poster).__name__}; give a path, a PIL image or bytes"
        )


def _label(poster: Poster, position: int) -> str:
    """The ``path`` column: a file's path as a run writes it (``jobs.runs.plan.discover``:
    absolute as given, links kept, valid UTF-8), so rows join on it; else a label."""
    if isinstance(poster, Image.Image):
        return f"<image {position}>"
    if not isinstance(poster, str | os.PathLike):
        return f"<bytes {position}>"
    path = os.path.abspath(poster)
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _bytes_of(poster: Poster, position: int) -> bytes:
    """The bytes to decode: a file's (OSError if it cannot be read), an image's as PNG."""
    if isinstance(poster, Image.Image):
        return _png(poster)
    if isinstance(poster, bytes | bytearray | memoryview):
        return bytes(poster)
    _check(poster, position)
    return Path(poster).read_bytes()


def _png(image: Image.Image) -> bytes:
    """An in-memory image as lossless PNG, so it meets the same decode (and the same
    checks of size and shape) as a file: the pixels the model sees are the same."""
    if image.mode not in _PNG_MODES:
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # fast: the bytes never leave memory
    return buf.getvalue()


def _batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


def _field(manifest: Any, name: str) -> Any:
    """A manifest's field, whether it is a dict or a typed object."""
    return manifest[name] if isinstance(manifest, dict) else getattr(manifest, name)
