"""A run plan on disk: a small header and one manifest per chunk.

``_plan.json`` holds what every chunk needs to know about its run (model, engine, top k,
chunk size) and the run's counts; ``_chunks/<index>.json`` lists that chunk's inputs;
``_duplicates.json`` the byte-identical copies (which always share their original's
chunk). A chunk's task reads the header and its own manifest: its cost does not grow
with the run. Only whole-run readers (a report, a resume, a planner looking for live
runs) read every manifest, one at a time.

Chunk sizes are not listed one by one: a chunk holds ``chunk_size`` inputs unless the
header's ``odd_sizes`` says otherwise (the last chunk, one stretched to keep copies
together, one a resume shrank), so the header stays small for a million inputs.

Plans written before this format (one ``_plan.json`` listing every input and chunk
bound) are still read as they are (jobs.runs.plan.RunPlan keeps both in memory).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Sequence

from anigenre.core.storage import Store
from anigenre.jobs.runs.layout import CHUNKS, DUPLICATES


def chunk_name(index: int) -> str:
    return f"{CHUNKS}/{index:08d}.json"


def read_chunk(files: Store, index: int) -> list[dict]:
    return json.loads(files.read_bytes(chunk_name(index)))


def write_chunk(files: Store, index: int, entries: list[dict]) -> None:
    files.write_bytes(chunk_name(index), json.dumps(entries).encode())


def read_duplicates(files: Store) -> list[dict]:
    try:
        return json.loads(files.read_bytes(DUPLICATES))
    except FileNotFoundError:
        return []


def write_duplicates(files: Store, duplicates: list[dict]) -> None:
    if duplicates:
        files.write_bytes(DUPLICATES, json.dumps(duplicates).encode())
    else:
        files.delete(DUPLICATES)


def is_header(record: dict) -> bool:
    """Whether a ``_plan.json`` is a header (this format) rather than a whole old plan."""
    return "inputs" not in record and "n_chunks" in record


def stored_inputs(files: Store, record: dict) -> Iterator[dict]:
    """Every input of a plan, in order, from its header or whole old record; one chunk
    manifest in memory at a time."""
    if not is_header(record):
        yield from record["inputs"]
        return
    for index in range(record["n_chunks"]):
        yield from read_chunk(files, index)


class ChunkBounds(Sequence):
    """``[start, end)`` of each chunk, from the chunk size and the few sizes that differ:
    ``len`` and :meth:`size` cost nothing, a bound a bisect over the odd sizes."""

    def __init__(self, chunk_size: int, count: int, odd: dict[int, int] | None = None) -> None:
        self.chunk_size, self.count = chunk_size, count
        self.odd = {int(k): int(v) for k, v in (odd or {}).items()}
        self._refresh()

    def _refresh(self) -> None:
        self._keys = sorted(self.odd)
        self._shift, total = [], 0  # rows the odd chunks before each key add or take
        for k in self._keys:
            self._shift.append(total)
            total += self.odd[k] - self.chunk_size
        self._total_shift = total

    def size(self, index: int) -> int:
        return self.odd.get(index, self.chunk_size)

    def resize(self, index: int, size: int) -> None:
        if size == self.chunk_size:
            self.odd.pop(index, None)
        else:
            self.odd[index] = size
        self._refresh()

    def start(self, index: int) -> int:
        k = bisect.bisect_left(self._keys, index)
        shift = self._shift[k] if k < len(self._keys) else self._total_shift
        return index * self.chunk_size + shift

    def rows(self) -> int:
        return self.count * self.chunk_size + self._total_shift

    def record(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.odd.items())}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(index)
        start = self.start(index)
        return [start, start + self.size(index)]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"ChunkBounds({self.count} chunks of {self.chunk_size}, odd={self.odd})"


def odd_sizes(bounds: Sequence, chunk_size: int) -> dict[str, int]:
    """The header's ``odd_sizes`` of any chunk bounds."""
    if isinstance(bounds, ChunkBounds):
        return bounds.record()
    return {str(i): e - s for i, (s, e) in enumerate(bounds) if e - s != chunk_size}


class LazyList(Sequence):
    """A list read from storage on first use, whose length is known without reading it:
    ``len`` and truth cost nothing, iteration streams unless it was read whole."""

    def __init__(self, length: int, stream, load=None) -> None:
        self._length, self._stream, self._load = length, stream, load
        self._items: list | None = None

    def _all(self) -> list:
        if self._items is None:
            self._items = list(self._load() if self._load else self._stream())
        return self._items

    def __len__(self) -> int:
        return self._length if self._items is None else len(self._items)

    def __iter__(self):
        return iter(self._items) if self._items is not None else self._stream()

    def __getitem__(self, index):
        return self._all()[index]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"LazyList({self._length} items)"
