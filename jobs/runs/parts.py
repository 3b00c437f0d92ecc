"""The one definition of a complete part: its file holds exactly its chunk's rows.

Anything that asks "is chunk i done?" (a worker skipping a redelivered chunk, the
sweeper, ``jobs status``, ``finalize``) goes through :func:`part_counts`, so they cannot
disagree about a half-written or stale part. Parts are read through the run's Store, on
a local disk or in a bucket alike.

A part is readable when it is Parquet with a text ``status`` column (:func:`inspect`).
One that is not (``echo garbage > part-00000.parquet``, a disk error) is damaged: whoever
meets it moves it out of ``predictions/``, which must hold only parts so that any reader
takes the folder as one table, into the run's ``damaged/`` bookkeeping with a note of
why (:func:`set_aside`). Its chunk is then missing like any other, and the run says so
(``_failed.json``) until a resume, or a new run of the same files, predicts them again.
Nothing is deleted: the bytes are kept as they were.

This module knows runs only by their ``run_id``, ``chunks``, ``chunk_rows``, ``parts``,
``out`` and ``part_name``: :mod:`jobs.runs.plan` and :mod:`jobs.runs.current` read parts
through it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from anigenre.core.errors import DataError
from anigenre.core.storage import Store
from anigenre.jobs.runs.layout import FAILED, MANIFEST, PREDICTIONS, parts_folder, run_folder

Counts = tuple[int, int]  # (ok rows, error rows)
DAMAGED = "damaged"  # in a run's bookkeeping folder: the parts set aside, and why
log = logging.getLogger(__name__)


class Plan(Protocol):
    """What of a run plan (jobs.runs.plan.RunPlan) reading its parts needs."""

    run_id: str
    chunks: Sequence[list[int]]  # only its length is asked for

    def chunk_rows(self, index: int) -> int: ...
    @property
    def out(self) -> Store: ...
    @property
    def parts(self) -> Store: ...
    def part_name(self, index: int) -> str: ...


@dataclass(frozen=True)
class Damage:
    """Why a part cannot be read as one: ``part`` is its name, ``why`` one line."""

    part: str
    why: str


def inspect(store: Store, name: str, *, whole: bool = False) -> Counts | Damage:
    """The part's (ok, error) rows, or why it is damaged. Reads the ``status`` column only
    (every column with ``whole``: to find which part broke a scan of many). A part that
    is not there raises FileNotFoundError, a store that cannot be reached StorageError:
    neither is damage."""
    try:
        table = pq.read_table(
            store.path(name), columns=None if whole else ["status"], filesystem=store.fs
        )
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError):
        # To pyarrow a reset connection and a file that is not Parquet can look alike.
        # The bytes read whole (a storage error raises from there) then tell them apart.
        return _parse(name, store.read_bytes(name), whole)
    return _counts(name, table)


def _parse(name: str, data: bytes, whole: bool) -> Counts | Damage:
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        if "status" not in file.schema_arrow.names:
            return Damage(name, "Parquet without a 'status' column")
        table = file.read(columns=None if whole else ["status"])
    except (pa.ArrowException, OSError) as exc:
        return Damage(name, _first_line(exc))
    return _counts(name, table)


def _counts(name: str, table: pa.Table) -> Counts | Damage:
    if "status" not in table.column_names:
        return Damage(name, "Parquet without a 'status' column")
    column = table["status"]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return Damage(name, f"its 'status' column holds {column.type}, not text")
    values = column.to_pylist()
    return values.count("ok"), values.count("error")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # pyarrow names the source first ("Could not open Parquet input source '<Buffer>': "),
    # which the message names itself, and ends with a guess ("Either the file is ...").
    text = re.sub(r"^Could not open Parquet input source '[^']*': ", "", text)
    return text.split(". ")[0].rstrip(".")


def set_aside(out: Store, run_id: str, name: str, why: str) -> str | None:
    """Move ``run_id``'s part ``name`` out of ``predictions/`` into the run's ``damaged/``
    folder, beside a note of ``why``, and withdraw the run's manifest: it is complete no
    more. Returns the one line that says so; None when the part is gone or reads by now
    (a worker wrote it again meanwhile). Each step can be repeated, so a process that
    dies half-way leaves a part that the next reader sets aside again."""
    part = f"{parts_folder(run_id)}/{name}"
    try:
        data = out.read_bytes(part)
    except FileNotFoundError:
        return None
    if not isinstance(_parse(name, data, whole=True), Damage):
        return None
    folder = f"{run_folder(run_id)}/{DAMAGED}"
    kept = _free_name(out, folder, name)
    out.write_bytes(f"{folder}/{kept}", data)
    at = dt.datetime.now(dt.UTC).isoformat()
    note = {"part": out.uri_of(part), "why": why, "at": at, "size": len(data)}
    out.write_json(f"{folder}/{kept}.json", note)
    _record_failure(out, run_id, name, why, out.uri_of(folder))
    out.delete(run_folder(run_id), MANIFEST)
    out.delete(part)  # last: until it is gone, any reader finds it and sets it aside again
    return (
        f"{out.uri_of(part)} is not a readable Parquet part ({why}); moved to "
        f"{out.uri_of(folder, kept)}: "
        f"'anigenre jobs resume {run_id}' predicts its files again"
    )


def _free_name(out: Store, folder: str, name: str) -> str:
    """``name``, or ``name`` with a number when a part of that name was set aside before:
    a chunk damaged twice keeps both."""
    kept, n = name, 1
    while out.exists(folder, kept):
        n += 1
        kept = name.replace(".parquet", f"-{n}.parquet")
    return kept


def _record_failure(out: Store, run_id: str, name: str, why: str, folder_uri: str) -> None:
    """The run's ``_failed.json`` (jobs.runs.markers), with this part added: the run
    waits for a resume, its files are free for other runs to take (jobs.runs.live)."""
    files = out.child(run_folder(run_id))
    try:
        record = json.loads(files.read_bytes(FAILED))
    except (FileNotFoundError, ValueError):
        record = {}
    damaged = {**record.get("damaged", {}), name: why}
    index = _chunk_of(name)
    chunks = sorted({*record.get("chunks", []), *([index] if index is not None else [])})
    if len(damaged) == 1:
        what = f"{name} is not a readable Parquet part ({why})"
    else:
        what = f"{len(damaged)} parts are not readable Parquet ({', '.join(sorted(damaged))})"
    # The command comes from whoever shows the reason: only it knows the data dir in use.
    their = "its" if len(damaged) == 1 else "their"
    reason = f"{what}, set aside in {folder_uri}; a resume predicts {their} files again"
    # A failure the sweeper recorded (chunks that never got a part) still stands.
    earlier = record.get("earlier") or (None if record.get("damaged") else record.get("reason"))
    record = {"chunks": chunks, "damaged": damaged, "reason": reason}
    if earlier:
        record.update(earlier=earlier, reason=f"{reason}; {earlier}")
    files.write_bytes(FAILED, json.dumps(record).encode())


def _chunk_of(name: str) -> int | None:
    found = re.fullmatch(r"part-(\d+)\.parquet", name)
    return int(found.group(1)) if found else None


def set_aside_damaged(out: Store, parts: list[str]) -> list[str]:
    """Of ``parts`` (paths under ``out``'s predictions folder, ``run_id=<id>/<name>``),
    set aside every damaged one; the lines that say so. Each is read whole: this is what
    finds the part that broke a scan of the folder. A damaged file outside any run's
    partition is not ours to move: a DataError names it."""
    said = []
    folder = out.child(PREDICTIONS)
    for path in parts:
        try:
            found = inspect(folder, path, whole=True)
        except FileNotFoundError:
            continue  # set aside, or replaced, by someone else meanwhile
        if not isinstance(found, Damage):
            continue
        run, _, name = path.partition("/")
        if not run.startswith("run_id=") or "/" in name:
            raise DataError(
                f"{folder.uri_of(path)} is not a readable Parquet part ({found.why}); "
                "move it out of the predictions folder"
            )
        line = set_aside(out, run.removeprefix("run_id="), name, found.why)
        if line:
            said.append(line)
    return said


def is_complete(plan: Plan, index: int, counts: Counts) -> bool:
    return sum(counts) == plan.chunk_rows(index)


def part_counts(plan: Plan, index: int) -> Counts | None:
    """(ok, error) rows of part ``index``, or None while it is absent or incomplete. A
    damaged part is set aside, and said in the log (a worker's, or this process's
    stderr): it is missing from now on."""
    found = _inspect_part(plan, index, quiet=False)
    if found is None:
        return None
    return found if is_complete(plan, index, found) else None


def _inspect_part(plan: Plan, index: int, quiet: bool) -> Counts | None:
    name = plan.part_name(index)
    try:
        found = inspect(plan.parts, name)
    except FileNotFoundError:
        return None
    if isinstance(found, Damage):
        said = set_aside(plan.out, plan.run_id, name, found.why)
        if said and not quiet:
            log.warning(said)
        return None
    return found


def read_part(plan: Plan, index: int) -> pa.Table | None:
    """Part ``index``'s rows, None while it is absent. A damaged part is set aside and
    its line raised (DataError): a caller reading a run's rows must not show fewer
    without saying so."""
    name = plan.part_name(index)
    try:
        found = inspect(plan.parts, name, whole=True)
    except FileNotFoundError:
        return None
    if isinstance(found, Damage):
        said = set_aside(plan.out, plan.run_id, name, found.why)
        if said:
            raise DataError(said)
    try:
        return plan.parts.read_table(name)
    except FileNotFoundError:
        return None


def chunk_done(plan: Plan, index: int) -> bool:
    return part_counts(plan, index) is not None


def all_written(plan: Plan) -> bool:
    """Whether every chunk has a part file, by one listing: the cheap test before
    :func:`missing_chunks` reads them all (each chunk's task asks; over S3 a read is a
    request, and a run's last chunk is the only one that needs them read)."""
    present = {f.path for f in plan.parts.list_files(recursive=False)}
    return all(plan.part_name(i) in present for i in range(len(plan.chunks)))


def missing_chunks(plan: Plan) -> list[int]:
    return [i for i, counts in enumerate(all_counts(plan)) if counts is None]


# Parts found complete, by URI, with the (mtime, size) they had: a long-lived process (a
# worker's sweep every 30 s, the finaliser right after its check) reads each version of
# a part once, not once per look. Bounded, oldest out first.
_KNOWN: OrderedDict[str, tuple[tuple[int, int], Counts]] = OrderedDict()
KNOWN_MAX = 200_000


def all_counts(plan: Plan) -> list[Counts | None]:
    """Each chunk's (ok, error) rows, None where its part is absent or incomplete: one
    listing of the parts, and a read of each part not seen at this version before (a
    damaged one is set aside and said, as by :func:`part_counts`)."""
    listed = {f.path: (f.mtime_ns or 0, f.size) for f in plan.parts.list_files(recursive=False)}
    versions = {i: listed.get(plan.part_name(i)) for i in range(len(plan.chunks))}
    keys = {i: plan.parts.uri_of(plan.part_name(i)) for i, v in versions.items() if v}
    unknown = [i for i in keys if (_KNOWN.get(keys[i]) or (None,))[0] != versions[i]]
    # The parts not seen before, read side by side (on S3 each is a round trip); what is
    # damaged is set aside afterwards, one at a time, as the failure record is one file.
    with ThreadPoolExecutor(READERS if unknown else 1) as pool:
        read = dict(zip(unknown, pool.map(lambda i: _read_counts(plan, i), unknown), strict=True))
    found: list[Counts | None] = []
    for index, version in versions.items():
        counts = None
        if version is not None:
            counts = _known(plan, index, keys[index], version, read.get(index, _CACHED))
        found.append(counts if counts is not None and is_complete(plan, index, counts) else None)
    return found


READERS = 8
_CACHED = object()


def _read_counts(plan: Plan, index: int) -> Counts | Damage | None:
    try:
        return inspect(plan.parts, plan.part_name(index))
    except FileNotFoundError:
        return None


def _known(plan: Plan, index: int, key: str, version, read) -> Counts | None:
    if read is _CACHED:
        known = _KNOWN.get(key)  # another thread may have pushed it out since
        read = known[1] if known is not None else _read_counts(plan, index)
        if known is not None:
            return read
    if isinstance(read, Damage):
        said = set_aside(plan.out, plan.run_id, read.part, read.why)
        if said:
            log.warning(said)
        read = None
    if read is None:
        _KNOWN.pop(key, None)
        return None
    _KNOWN[key] = (version, read)
    if len(_KNOWN) > KNOWN_MAX:
        _KNOWN.popitem(last=False)
    return read


def part_sizes(plan: Plan) -> dict[str, int]:
    """Size of each of the run's parts, by one listing: what the manifest records."""
    names = {plan.part_name(i) for i in range(len(plan.chunks))}
    return {f.path: f.size for f in plan.parts.list_files(recursive=False) if f.path in names}


def still_complete(out: Store, run_id: str, manifest: dict) -> bool:
    """Whether a complete run's parts are still the ones its manifest counted, by one
    listing: a part whose size differs from the recorded one (or, for a manifest from
    before sizes were recorded, that changed after the run finished) is read again, and
    set aside when damaged, which withdraws the manifest. A part that is simply gone is
    left to those who read it."""
    parts = out.child(parts_folder(run_id))
    listed = {f.path: f for f in parts.list_files(recursive=False)}
    sizes = manifest.get("sizes")
    finished_ns = dt.datetime.fromisoformat(manifest["finished"]).timestamp() * 1e9
    complete = True
    for name in manifest["parts"]:
        f = listed.get(name)
        if f is None:
            continue
        changed = f.size != sizes.get(name) if sizes else (f.mtime_ns or 0) > finished_ns
        if not changed:
            continue
        try:
            found = inspect(parts, name)
        except FileNotFoundError:
            continue
        if isinstance(found, Damage):
            set_aside(out, run_id, name, found.why)
            complete = False
    return complete


class PartCounts:
    """:func:`part_counts` with a cache: each part is read once per version of its file.

    A poll re-reads only the parts written since the last one: ``jobs wait`` on a run of
    1,600 parts otherwise reads all of them, about a second, twice a second. A damaged
    part is set aside quietly: the run's status says so.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[int, int], Counts]] = {}
        self._listed: dict[str, tuple[int, int]] | None = None

    def look(self, plan: Plan) -> None:
        """List the run's parts once for this poll, rather than one look per part (a
        request each on S3; a LIST answers a thousand)."""
        self._listed = {
            f.path: (f.mtime_ns or 0, f.size) for f in plan.parts.list_files(recursive=False)
        }

    def __call__(self, plan: Plan, index: int) -> tuple[int, int, float] | None:
        """(ok, error, mtime in s) of part ``index``; None while absent or incomplete."""
        name = plan.part_name(index)
        if self._listed is not None:
            version = self._listed.get(name)
            if version is None:
                return None
        else:
            info = plan.parts.fs.get_file_info(plan.parts.path(name))
            if info.type != pafs.FileType.File:
                return None
            version = (info.mtime_ns or 0, info.size or 0)
        cached = self._seen.get(name)
        if cached is None or cached[0] != version:
            counts = _inspect_part(plan, index, quiet=True)
            if counts is None:  # replaced, removed or set aside since
                return None
            cached = (version, counts)
            self._seen[name] = cached
        counts = cached[1]
        return (*counts, version[0] / 1e9) if is_complete(plan, index, counts) else None
