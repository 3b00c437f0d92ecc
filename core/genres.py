"""The genre vocabulary and multi-hot encoding: the one place either is defined."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from anigenre.core.errors import DataError

# AniList's genre collection, in its own (alphabetical) order. Hentai comes last, and
# only with adult content, so the 18 general genres keep their indices either way.
GENRES = (
    "Action",
    "Adventure",
    "Comedy",
    "Drama",
    "Ecchi",
    "Fantasy",
    "Horror",
    "Mahou Shoujo",
    "Mecha",
    "Music",
    "Mystery",
    "Psychological",
    "Romance",
    "Sci-Fi",
    "Slice of Life",
    "Sports",
    "Supernatural",
    "Thriller",
)
ADULT_GENRE = "Hentai"


@dataclass(frozen=True)
class Vocabulary:
    genres: tuple[str, ...] = GENRES

    @classmethod
    def for_content(cls, include_adult: bool = False) -> Vocabulary:
        return cls(GENRES + (ADULT_GENRE,) if include_adult else GENRES)

    def __len__(self) -> int:
        return len(self.genres)

    def check(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self.genres))
        if unknown:
            raise DataError(
                f"unknown genre(s) {', '.join(map(repr, unknown))}; "
                f"the vocabulary is: {', '.join(self.genres)}"
            )

    def encode(self, labels: Sequence[Sequence[str]]) -> np.ndarray:
        """Rows of genre names -> (n, len(vocab)) uint8 multi-hot. Unknown names raise."""
        index = {g: i for i, g in enumerate(self.genres)}
        out = np.zeros((len(labels), len(self.genres)), dtype=np.uint8)
        for row, names in enumerate(labels):
            self.check(names)
            out[row, [index[n] for n in names]] = 1
        return out

    def decode(self, multi_hot: np.ndarray) -> list[list[str]]:
        return [[self.genres[j] for j in np.flatnonzero(row)] for row in np.atleast_2d(multi_hot)]

    def columns(self, prefix: str = "p_") -> list[str]:
        return [prefix + column_slug(g) for g in self.genres]

    def to_json(self) -> str:
        return json.dumps(list(self.genres))

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls(tuple(json.loads(text)))


def column_slug(genre: str) -> str:
    """``Sci-Fi`` -> ``sci_fi``, ``Slice of Life`` -> ``slice_of_life``."""
    return re.sub(r"[^0-9a-z]+", "_", genre.lower()).strip("_")
