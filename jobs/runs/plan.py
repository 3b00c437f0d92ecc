"""Planning a run: discover and hash the inputs, drop what is already predicted or being
predicted by another live run, and cut chunks.

Every input path gets exactly one row for the model in the output dir: a path whose
content already has an ``ok`` row there is not planned again (``--force`` does), a path
that a live run of the same model owns is left to it (see :mod:`jobs.runs.live`), and a
byte-identical copy gets its own row with the probabilities computed once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import InitVar, dataclass, field, fields
from functools import cached_property
from pathlib import Path, PurePosixPath

import pyarrow as pa
from anigenre.core.errors import ConfigError
from anigenre.core.schemas import UTC_MILLIS
from anigenre.core.storage import S3Options, Store, expand_home, is_remote, open_store
from anigenre.jobs.runs import live
from anigenre.jobs.runs.current import first_schema, predictions_dataset, scan, tell
from anigenre.jobs.runs.inputs import InputReader, remote_files
from anigenre.jobs.runs.layout import (
    FAILED,
    MANIFEST,
    PLAN,
    PREDICTIONS,
    QUEUED,
    parts_dir_for,
    parts_folder,
    run_dir_for,
    run_folder,
)
from anigenre.jobs.runs.planfile import (
    ChunkBounds,
    LazyList,
    odd_sizes,
    read_chunk,
    read_duplicates,
    write_chunk,
    write_duplicates,
)

HASH_THREADS = 16  # reads in flight while hashing: S3 GETs wait on the network, not the CPU
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
__all__ = ["FAILED", "MANIFEST", "PLAN", "QUEUED", "RunPlan", "plan_run", "run_dir_for"]


@dataclass
class RunPlan:
    run_id: str
    model_id: str
    out_dir: str
    created: str
    top_k: int
    chunk_size: int
    # {"path", "size", "sha256"}: sha256 None when unreadable; "path" is always valid
    # UTF-8 (what the row says), and a name that is not gets "fs_path_hex" to open it by.
    # A file and its byte-identical copies are adjacent and never split between chunks.
    # A plan read back from its header (jobs.runs.planfile) reads these three lazily:
    # their lengths cost nothing, their items come from the chunk manifests.
    inputs: Sequence[dict] | None = None
    chunks: Sequence[list[int]] | None = None  # [start, end) into inputs
    duplicates: Sequence[dict] | None = None  # {"path", "same_as"}: copies
    already_predicted: int = 0
    in_live_runs: dict[str, int] = field(default_factory=dict)  # run id -> inputs left to it
    force: bool = False  # planned with --force: existing rows and live runs were ignored
    # What runs the network, for every chunk wherever it runs. Plans from before engines
    # existed ran on Keras, and a resumed run finishes on the engine it started with.
    engine: str = "keras"
    # Write the run's report once it is complete (the worker that finalises it, or the next
    # inbox tick): scheduled inbox runs have no one waiting to run 'anigenre report'.
    report_when_complete: bool = False
    # How to reach an s3:// output dir and inputs; from the settings, never saved.
    s3: S3Options | None = field(default=None, repr=False, compare=False)
    # The header's counts (jobs.runs.planfile), when the lists above are not given.
    n_inputs: InitVar[int | None] = None
    n_chunks: InitVar[int | None] = None
    n_duplicates: InitVar[int | None] = None
    odd_sizes: InitVar[dict | None] = None

    def __post_init__(self, n_inputs, n_chunks, n_duplicates, odd_sizes) -> None:
        self._manifests: dict[int, list[dict]] = {}  # the last few chunks read
        if self.inputs is None:
            if n_chunks is None:
                raise TypeError("a RunPlan needs its inputs and chunks, or a header's counts")
            self.chunks = ChunkBounds(self.chunk_size, n_chunks, odd_sizes)
            self.inputs = LazyList(n_inputs or 0, self._stream_inputs)
            if self.duplicates is None:
                self.duplicates = LazyList(n_duplicates or 0, self._read_duplicates)
        if self.chunks is None:
            self.chunks = []
        if self.duplicates is None:
            self.duplicates = []

    @cached_property
    def out(self) -> Store:
        return open_store(self.out_dir, self.s3)

    @property
    def files(self) -> Store:
        """The run's bookkeeping: plan, markers, lease, locks."""
        return self.out.child(run_folder(self.run_id))

    @property
    def parts(self) -> Store:
        """The run's partition of the predictions table."""
        return self.out.child(parts_folder(self.run_id))

    def part_name(self, index: int) -> str:
        return f"part-{index:05d}.parquet"

    @property
    def stored(self) -> bool:
        """Whether the inputs are in the chunk manifests rather than in memory."""
        return isinstance(self.inputs, LazyList)

    def chunk_rows(self, index: int) -> int:
        """How many rows chunk ``index``'s part holds once complete; reads nothing."""
        if isinstance(self.chunks, ChunkBounds):
            return self.chunks.size(index)
        start, end = self.chunks[index]
        return end - start

    def chunk_entries(self, index: int) -> list[dict]:
        """Chunk ``index``'s inputs: its manifest alone is read, whatever the run's size."""
        if not self.stored:
            start, end = self.chunks[index]
            return list(self.inputs[start:end])
        entries = self._manifests.get(index)
        if entries is None:
            entries = read_chunk(self.files, index)
            if len(self._manifests) >= 4:  # a chunk and the one decoded ahead
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[index] = entries
        return entries

    def _stream_inputs(self):
        for index in range(len(self.chunks)):
            yield from read_chunk(self.files, index)

    def _read_duplicates(self):
        return iter(read_duplicates(self.files))

    # Local paths of the same, for a local output dir.
    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.out_dir, self.run_id)

    @property
    def parts_dir(self) -> Path:
        return parts_dir_for(self.out_dir, self.run_id)

    def part_path(self, index: int) -> Path:
        return self.parts_dir / self.part_name(index)

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / MANIFEST

    @property
    def queued_path(self) -> Path:
        return self.run_dir / QUEUED

    @property
    def failed_path(self) -> Path:
        return self.run_dir / FAILED

    def header(self) -> dict:
        """What ``_plan.json`` holds: everything but the lists, and their counts."""
        lists = ("inputs", "chunks", "duplicates", "s3")
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in lists}
        record.update(
            n_inputs=len(self.inputs),
            n_chunks=len(self.chunks),
            n_duplicates=len(self.duplicates),
            odd_sizes=odd_sizes(self.chunks, self.chunk_size),
        )
        return record

    def save(self) -> None:
        """Chunk manifests (those held in memory), copies, then the header, which makes
        the plan: a reader never finds a header whose chunks are not written yet."""
        if not self.stored:
            writes = (
                (i, list(self.inputs[start:end])) for i, (start, end) in enumerate(self.chunks)
            )
            write_chunks(self.files, writes)
        if not isinstance(self.duplicates, LazyList):
            write_duplicates(self.files, list(self.duplicates))
        self.files.write_bytes(PLAN, json.dumps(self.header()).encode())


def write_chunks(files: Store, chunks) -> None:
    """Write ``(index, entries)`` manifests; to a bucket several at a time (each a PUT)."""
    if files.is_local:
        for index, entries in chunks:
            write_chunk(files, index, entries)
        return
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        pending: deque = deque()
        for index, entries in chunks:
            pending.append(pool.submit(write_chunk, files, index, entries))
            while len(pending) >= HASH_THREADS * 2:
                pending.popleft().result()
        for f in pending:
            f.result()


def discover(paths: list, s3: S3Options | None = None) -> list:
    """Files named directly, plus everything with an image name found recursively in
    named folders: a dangling link, a FIFO or a folder named ``x.jpg`` too, each gets an
    error row, not silence. An ``s3://`` location gives URIs (jobs.runs.inputs). Local
    paths are absolute as given: a symlinked folder's posters keep the link's path."""
    return list(iter_discover(paths, s3))


def iter_discover(paths: list, s3: S3Options | None = None) -> Iterator[Path | str]:
    """:func:`discover`, one file at a time: what it remembers is one small key per file
    (to find a file named twice), so a million inputs fit in memory."""
    given = []
    for raw in paths:  # every argument checked before the first file is yielded
        if is_remote(raw):
            given.append(raw)
            continue
        path = expand_home(Path(raw))  # the API's "~/posters", as the CLI's arguments are
        if not (path.exists() or path.is_symlink()):
            raise ConfigError(f"{shown(str(path))} does not exist; give image files or folders")
        given.append(path)
    # A file named twice (a folder and a file in it, two links to one file) is one input,
    # under the first name it was reached by.
    seen: set = set()
    for item in given:
        if isinstance(item, str):
            for uri in remote_files(str(item), IMAGE_SUFFIXES, s3):
                if uri not in seen:
                    seen.add(uri)
                    yield uri
            continue
        found = _walk(item) if item.is_dir() else [item]  # a file, FIFO, device, bad link
        for p in found:
            p = Path(os.path.abspath(p))
            key = _same_file(p)
            if key not in seen:
                seen.add(key)
                yield p


def _walk(folder: Path) -> Iterator[Path]:
    """What ``sorted(folder.rglob("*"))`` gives with an image suffix, in that order (by
    path parts), one directory listed at a time; links to folders are not followed."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = folder / entry.name
        if PurePosixPath(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            yield path
        try:
            into = entry.is_dir() and not entry.is_symlink()
        except OSError:
            into = False
        if into:
            yield from _walk(path)


def _same_file(path: Path) -> object:
    """What two names of one file share: its device and inode (a dangling link: its
    own path)."""
    try:
        st = path.stat()
    except OSError:
        return str(path)
    return st.st_dev << 64 | st.st_ino  # one int: a million of them is tens of MB


def shown(name: str) -> str:
    """A file name as valid UTF-8: bytes that are not UTF-8 (which Python carries as lone
    surrogates, and Parquet cannot store) become ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def input_entry(path: Path | str, reader: InputReader | None = None) -> dict:
    name = str(path)
    size, sha = (reader or InputReader()).digest(name)
    entry = {"path": shown(name), "size": size, "sha256": sha}
    if entry["path"] != name:
        entry["fs_path_hex"] = os.fsencode(name).hex()
    return entry


def fs_path(entry: dict) -> str:
    """The name to open an input by: its shown path, or the exact bytes when that differs."""
    raw = entry.get("fs_path_hex")
    return os.fsdecode(bytes.fromhex(raw)) if raw else entry["path"]


def ok_rows(
    out: Store,
    model_id: str,
    exclude_run: str | None = None,
    since: str | None = None,
    statuses: tuple[str, ...] = ("ok",),
) -> set[tuple[str, str]]:
    """(path, sha256) of every file this model already predicted ok under ``out``
    (by runs other than ``exclude_run``; at or after the ISO time ``since``; with
    ``statuses``, rows of those statuses instead)."""
    import pyarrow.dataset as pads  # it imports pandas: only planning needs it, not a chunk

    folder = out.child(PREDICTIONS)
    wanted = (pads.field("model_id") == model_id) & pads.field("status").isin(list(statuses))
    if exclude_run is not None:
        wanted &= pads.field("run_id") != exclude_run
    if since is not None:
        at = pa.scalar(dt.datetime.fromisoformat(since), UTC_MILLIS)
        wanted &= pads.field("predicted_at") >= at
    # A damaged part is set aside, and said: its files have no ok row, so they are planned.
    table, said = scan(
        out,
        lambda parts: predictions_dataset(folder, parts).to_table(
            columns=["path", "sha256"], filter=wanted
        ),
    )
    tell(said)
    if table is None:
        return set()
    return set(zip(table["path"].to_pylist(), table["sha256"].to_pylist(), strict=True))


def check_genre_columns(out: Store, columns: list[str]) -> None:
    """One predictions folder is one table: its parts all have the same ``p_<genre>``
    columns. Readers take a folder's columns from one file, so a part with other columns
    would be dropped silently (pandas, pyarrow) or refused (DuckDB, Polars). Parts agree
    by induction, so the first one found speaks for all."""
    schema, said = first_schema(out)
    tell(said)
    if schema is None:
        return
    have = [n for n in schema.names if n.startswith("p_")]
    if have == list(columns):
        return
    diff = sorted(set(have) ^ set(columns)) or ["the same genres in another order"]
    raise ConfigError(
        f"{out.uri_of(PREDICTIONS)} holds predictions with {len(have)} genre columns and "
        f"this model has {len(columns)} (differing: {', '.join(diff[:6])}); one predictions "
        "folder is one table, so give this model another --out"
    )


def group_copies(entries: list[dict]) -> tuple[list[dict], list[dict]]:
    """``entries`` with each byte-identical copy moved right after the first of its
    content, and the copies as ``{"path", "same_as"}``. Unreadable files copy nothing."""
    groups: dict[object, list[dict]] = {}
    for i, entry in enumerate(entries):
        groups.setdefault(entry["sha256"] or ("unreadable", i), []).append(entry)
    ordered = [e for group in groups.values() for e in group]
    copies = [
        {"path": c["path"], "same_as": group[0]["path"]}
        for group in groups.values()
        for c in group[1:]
    ]
    return ordered, copies


def run_id_at(now: dt.datetime) -> str:
    """``YYYYmmddTHHMMSSmmm-hex``: sorts by creation time as text, even for two runs
    planned in the same second (ids from before milliseconds, ``…HHMMSS-hex``, still sort
    among these because ``-`` sorts before every digit)."""
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}-{secrets.token_hex(3)}"


def cut_chunks(entries: list[dict], chunk_size: int) -> list[list[int]]:
    """[start, end) bounds of ``chunk_size`` entries, stretched so that a file and its
    copies share a chunk: the chunk computes once and writes a row for each."""
    bounds, start = [], 0
    for i in range(1, len(entries) + 1):
        if i == len(entries) or (
            i - start >= chunk_size
            and not (entries[i]["sha256"] and entries[i]["sha256"] == entries[i - 1]["sha256"])
        ):
            bounds.append([start, i])
            start = i
    return bounds


def _claim(
    entries, done: set[tuple[str, str]], owners: dict[str, str]
) -> tuple[list[dict], int, Counter]:
    """Split ``entries`` into (to predict, already ok, left to live runs by run id)."""
    todo, already, left = [], 0, Counter()
    for entry in entries:
        owner = _owner(entry, done, owners)
        if owner is None:
            todo.append(entry)
        elif owner is _DONE:
            already += 1
        else:
            left[owner] += 1
    return todo, already, left


_DONE = object()  # the file already has its row


def _owner(entry: dict, done: set[tuple[str, str]], owners: dict[str, str]):
    """None when the file is ours to predict, _DONE when it has its row, else the id of
    the live run that owns it."""
    if (entry["path"], entry["sha256"]) in done:
        return _DONE
    return owners.get(entry["path"])


def hashed(files, reader: InputReader, threads: int = HASH_THREADS) -> Iterator[dict]:
    """Input entries of ``files`` in their order, ``threads`` reads in flight (a remote
    file is a round trip) and no more than a few times that many held at once."""
    with ThreadPoolExecutor(threads) as pool:
        window: deque = deque()
        for path in files:
            window.append(pool.submit(input_entry, path, reader))
            if len(window) >= threads * 4:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _digest_key(sha: str) -> int:
    return int(sha[:16], 16)  # 64 bits: a collision only costs a second look (pass 2)


class _Spool:
    """The hashed entries on local disk, one JSON line each: planning a million files
    holds a key per file in memory, not the entries."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.count = 0
        self._seen: dict[int, int] = {}  # digest key -> how many files have it

    def add(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.count += 1
        if entry["sha256"]:
            key = _digest_key(entry["sha256"])
            self._seen[key] = self._seen.get(key, 0) + 1

    def repeated(self) -> set[int]:
        """Digest keys that more than one file has: where the copies are."""
        keys = {k for k, n in self._seen.items() if n > 1}
        self._seen = {}
        return keys

    def __iter__(self) -> Iterator[dict]:
        self.file.seek(0)
        for line in self.file:
            yield json.loads(line)

    def close(self) -> None:
        self.file.close()


class _ChunkCutter:
    """Chunks cut as entries come: ``chunk_size`` each, stretched so that a file and the
    copies right after it share a chunk (the rule of :func:`cut_chunks`); each manifest
    is written as soon as it is cut."""

    def __init__(self, files: Store, chunk_size: int) -> None:
        self.files, self.chunk_size = files, chunk_size
        self.buffer: list[dict] = []
        self.count = self.rows = 0
        self.odd: dict[int, int] = {}
        self._pending: deque = deque()
        self._pool = None if files.is_local else ThreadPoolExecutor(HASH_THREADS)

    def add(self, entry: dict) -> None:
        last = self.buffer[-1] if self.buffer else None
        copy = last is not None and entry["sha256"] and entry["sha256"] == last["sha256"]
        if len(self.buffer) >= self.chunk_size and not copy:
            self.flush()
        self.buffer.append(entry)

    def flush(self) -> None:
        if not self.buffer:
            return
        entries, index = self.buffer, self.count
        if self._pool is None:
            write_chunk(self.files, index, entries)
        else:
            self._pending.append(self._pool.submit(write_chunk, self.files, index, entries))
            while len(self._pending) >= HASH_THREADS * 2:
                self._pending.popleft().result()
        if len(entries) != self.chunk_size:
            self.odd[index] = len(entries)
        self.count += 1
        self.rows += len(entries)
        self.buffer = []

    def close(self) -> None:
        self.flush()
        if self._pool is not None:
            for f in self._pending:
                f.result()
            self._pool.shutdown()


def plan_run(
    paths: list,
    *,
    model_id: str,
    out_dir: Path | str,
    top_k: int = 4,
    chunk_size: int = 64,
    force: bool = False,
    now: dt.datetime | None = None,
    hold: bool = False,
    engine: str = "keras",
    retry_errors: bool = True,
    genre_columns: list[str] | None = None,
    s3: S3Options | None = None,
    lock: live.PlanningLock | None = None,
) -> RunPlan:
    """Hash the inputs, then, under the output dir's planning lock, claim those with no
    ok row and no live owner (``force``: every file, whatever rows or runs exist). Writes
    the plan only when there is something to predict; with ``hold``, this process keeps
    the run's lock (it will run it, or queue it). Without ``retry_errors``, a file whose
    content already has an error row counts as predicted too (the inbox: a broken poster
    must not make a run on every tick). ``genre_columns``: the model's ``p_`` columns,
    refused when the folder's parts have others (:func:`check_genre_columns`).
    ``out_dir`` and ``paths`` may be ``s3://`` URIs (reached with ``s3``); planning into
    object storage takes ``lock`` (see :func:`live.planning`).

    Memory stays bounded whatever the number of files: discovery and hashing stream into
    a spool on local disk, and the chunks are cut from it and written one by one."""
    now = now or dt.datetime.now(dt.UTC)
    reader = InputReader(s3)
    spool = _Spool()
    try:
        # The slow part, outside the lock; in threads, since a remote file is a round trip.
        for entry in hashed(iter_discover(paths, s3), reader):
            spool.add(entry)
        if not spool.count:
            raise ConfigError("no image files found in the given paths")
        out = open_store(out_dir, s3)
        plan = RunPlan(
            run_id=run_id_at(now),
            model_id=model_id,
            out_dir=out.uri if not out.is_local else str(Path(out.root).resolve()),
            created=now.isoformat(),
            top_k=top_k,
            chunk_size=chunk_size,
            inputs=[],
            chunks=[],
            force=force,
            engine=engine,
            s3=s3,
        )
        with live.planning(plan.out, lock):
            if genre_columns is not None:
                check_genre_columns(plan.out, genre_columns)
            statuses = ("ok",) if retry_errors else ("ok", "error")
            done = set() if force else ok_rows(plan.out, model_id, statuses=statuses)
            owners = {} if force else live.live_inputs(plan.out, model_id)
            _cut(plan, spool, done, owners)
            if plan.inputs:
                plan.save()
                if hold:
                    live.hold(plan.files)
    finally:
        spool.close()
    return plan


def _cut(plan: RunPlan, spool: _Spool, done, owners) -> None:
    """Claim the spooled entries and write the chunks of those left, each file's copies
    right after it (as :func:`group_copies` orders them); fills in ``plan``."""
    repeated = spool.repeated()
    # Pass 1: the files that have copies, grouped by content (few, as a rule).
    groups: dict[str, list[dict]] = {}
    if repeated:
        for entry in spool:
            sha = entry["sha256"]
            if sha and _digest_key(sha) in repeated and _owner(entry, done, owners) is None:
                groups.setdefault(sha, []).append(entry)
    groups = {sha: group for sha, group in groups.items() if len(group) > 1}
    # Pass 2: claims counted, chunks cut and written; a group goes where its first file is.
    cutter = _ChunkCutter(plan.files, plan.chunk_size)
    already, left, duplicates, placed = 0, Counter(), [], set()
    for entry in spool:
        owner = _owner(entry, done, owners)
        if owner is _DONE:
            already += 1
        elif owner is not None:
            left[owner] += 1
        elif entry["sha256"] in groups:
            if entry["sha256"] in placed:
                continue
            placed.add(entry["sha256"])
            group = groups[entry["sha256"]]
            for e in group:
                cutter.add(e)
            duplicates.extend({"path": c["path"], "same_as": group[0]["path"]} for c in group[1:])
        else:
            cutter.add(entry)
    cutter.close()
    plan.already_predicted, plan.in_live_runs = already, dict(left)
    if cutter.count:
        plan.chunks = ChunkBounds(plan.chunk_size, cutter.count, cutter.odd)
        plan.inputs = LazyList(cutter.rows, plan._stream_inputs)
        plan.duplicates = duplicates


def reclaim(plan: RunPlan, missing: list[int]) -> tuple[RunPlan, int]:
    """Before a resume: drop from the ``missing`` chunks the files that another run has
    predicted ok, or that a live run owns, since this run was planned. Complete chunks
    keep their sizes, so their parts stay complete; a chunk left empty writes an
    empty part. Call it under :func:`live.planning`. Returns the plan and how many went.
    Only the missing chunks' manifests are read and rewritten.

    Rows from before the plan count too unless it was forced: a plain plan already left
    those files out, and a forced one was asked to predict them again."""
    missing_set = set(missing)
    if not missing_set:
        return plan, 0
    since = plan.created if plan.force else None
    done = ok_rows(plan.out, plan.model_id, exclude_run=plan.run_id, since=since)
    owners = live.live_inputs(plan.out, plan.model_id, exclude=plan.run_id)
    changed: dict[int, list[dict]] = {}
    removed: set[str] = set()
    dropped = 0
    for index in sorted(missing_set):
        entries = plan.chunk_entries(index)
        kept, already, left = _claim(entries, done, owners)
        plan.already_predicted += already
        for run_id, n in left.items():
            plan.in_live_runs[run_id] = plan.in_live_runs.get(run_id, 0) + n
        dropped += already + sum(left.values())
        # A size that disagrees with the manifest (a resume killed between the two
        # writes) is mended here too.
        if len(kept) != len(entries) or plan.chunk_rows(index) != len(kept):
            changed[index] = kept
            removed |= {e["path"] for e in entries} - {e["path"] for e in kept}
    if changed:
        _replace_chunks(plan, changed, removed)
        plan.save()
    return plan, dropped


def _replace_chunks(plan: RunPlan, changed: dict[int, list[dict]], removed: set[str]) -> None:
    duplicates = [
        d for d in plan.duplicates if d["path"] not in removed and d["same_as"] not in removed
    ]
    if not plan.stored:
        inputs, chunks = [], []
        for index, (start, end) in enumerate(plan.chunks):
            entries = changed.get(index, plan.inputs[start:end])
            chunks.append([len(inputs), len(inputs) + len(entries)])
            inputs.extend(entries)
        plan.inputs, plan.chunks, plan.duplicates = inputs, chunks, duplicates
        return
    write_chunks(plan.files, changed.items())
    plan._manifests.clear()
    bounds = plan.chunks
    for index, entries in changed.items():
        bounds.resize(index, len(entries))
    plan.inputs = LazyList(bounds.rows(), plan._stream_inputs)
    plan.duplicates = duplicates
