"""The one definition of a complete part: its file holds exactly its chunk's rows.

Anything that asks "is chunk i done?" (a worker skipping a redelivered chunk, the
sweeper, ``jobs status``, ``finalize``) goes through :func:`part_counts`, so they cannot
disagree about a half-written or stale part. Parts are read through the run's Store, on
a local disk or in a bucket alike.
"""

from __future__ import annotations

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from anigenre.core.storage import Store
from anigenre.jobs.runs.plan import RunPlan

Counts = tuple[int, int]  # (ok rows, error rows)


def read_counts(store: Store, name: str) -> Counts:
    status = pq.read_table(store.path(name), columns=["status"], filesystem=store.fs)
    values = status["status"].to_pylist()
    return values.count("ok"), values.count("error")


def is_complete(plan: RunPlan, index: int, counts: Counts) -> bool:
    start, end = plan.chunks[index]
    return sum(counts) == end - start


def part_counts(plan: RunPlan, index: int) -> Counts | None:
    """(ok, error) rows of part ``index``, or None while it is absent or incomplete."""
    name = plan.part_name(index)
    try:
        counts = read_counts(plan.parts, name)
    except FileNotFoundError:
        return None
    return counts if is_complete(plan, index, counts) else None


def chunk_done(plan: RunPlan, index: int) -> bool:
    return part_counts(plan, index) is not None


def all_written(plan: RunPlan) -> bool:
    """Whether every chunk has a part file, by one listing: the cheap test before
    :func:`missing_chunks` reads them all (each chunk's task asks; over S3 a read is a
    request, and a run's last chunk is the only one that needs them read)."""
    present = {f.path for f in plan.parts.list_files(recursive=False)}
    return all(plan.part_name(i) in present for i in range(len(plan.chunks)))


def missing_chunks(plan: RunPlan) -> list[int]:
    return [i for i in range(len(plan.chunks)) if not chunk_done(plan, i)]


class PartCounts:
    """:func:`part_counts` with a cache: each part is read once per version of its file.

    A poll re-reads only the parts written since the last one: ``jobs wait`` on a run of
    1,600 parts otherwise reads all of them, about a second, twice a second.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[int, int], Counts]] = {}

    def __call__(self, plan: RunPlan, index: int) -> tuple[int, int, float] | None:
        """(ok, error, mtime in s) of part ``index``; None while absent or incomplete."""
        name = plan.part_name(index)
        info = plan.parts.fs.get_file_info(plan.parts.path(name))
        if info.type != pafs.FileType.File:
            return None
        version = (info.mtime_ns or 0, info.size or 0)
        cached = self._seen.get(name)
        if cached is None or cached[0] != version:
            try:
                cached = (version, read_counts(plan.parts, name))
            except FileNotFoundError:  # replaced or removed since
                return None
            self._seen[name] = cached
        counts = cached[1]
        return (*counts, version[0] / 1e9) if is_complete(plan, index, counts) else None
