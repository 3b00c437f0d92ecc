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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
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
    inputs: list[dict]
    chunks: list[list[int]]  # [start, end) into inputs
    duplicates: list[dict] = field(default_factory=list)  # {"path", "same_as"}: copies
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

    def save(self) -> None:
        record = {k: v for k, v in asdict(self).items() if k != "s3"}
        self.files.write_bytes(PLAN, json.dumps(record).encode())


def discover(paths: list, s3: S3Options | None = None) -> list:
    """Files named directly, plus everything with an image name found recursively in
    named folders: a dangling link, a FIFO or a folder named ``x.jpg`` too, each gets an
    error row, not silence. An ``s3://`` location gives URIs (jobs.runs.inputs). Local
    paths are absolute as given: a symlinked folder's posters keep the link's path."""
    found: list = []
    for raw in paths:
        if is_remote(raw):
            found.extend(remote_files(str(raw), IMAGE_SUFFIXES, s3))
            continue
        path = expand_home(Path(raw))  # the API's "~/posters", as the CLI's arguments are
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists() or path.is_symlink():  # a file, or a FIFO, a device, a bad link
            found.append(path)
        else:
            raise ConfigError(f"{shown(str(path))} does not exist; give image files or folders")
    # A file named twice (a folder and a file in it, two links to one file) is one input,
    # under the first name it was reached by.
    first: dict = {}
    for p in found:
        if isinstance(p, str):
            first.setdefault(p, p)
        else:
            p = Path(os.path.abspath(p))
            first.setdefault(_same_file(p), p)
    return list(first.values())


def _same_file(path: Path) -> object:
    """What two names of one file share: its device and inode (a dangling link: its
    own path)."""
    try:
        st = path.stat()
    except OSError:
        return path
    return (st.st_dev, st.st_ino)


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
    entries: list[dict], done: set[tuple[str, str]], owners: dict[str, str]
) -> tuple[list[dict], int, Counter]:
    """Split ``entries`` into (to predict, already ok, left to live runs by run id)."""
    todo, already, left = [], 0, Counter()
    for entry in entries:
        if (entry["path"], entry["sha256"]) in done:
            already += 1
        elif entry["path"] in owners:
            left[owners[entry["path"]]] += 1
        else:
            todo.append(entry)
    return todo, already, left


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
    object storage takes ``lock`` (see :func:`live.planning`)."""
    now = now or dt.datetime.now(dt.UTC)
    files = discover(paths, s3)
    if not files:
        raise ConfigError("no image files found in the given paths")
    reader = InputReader(s3)
    # The slow part, outside the lock; in threads, since a remote file is a round trip.
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        entries = list(pool.map(lambda p: input_entry(p, reader), files))
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
        todo, plan.already_predicted, left = _claim(entries, done, owners)
        plan.inputs, plan.duplicates = group_copies(todo)
        plan.chunks = cut_chunks(plan.inputs, chunk_size)
        plan.in_live_runs = dict(left)
        if plan.inputs:
            plan.save()
            if hold:
                live.hold(plan.files)
    return plan


def reclaim(plan: RunPlan, missing: list[int]) -> tuple[RunPlan, int]:
    """Before a resume: drop from the ``missing`` chunks the files that another run has
    predicted ok, or that a live run owns, since this run was planned. Complete chunks
    keep their bounds' sizes, so their parts stay complete; a chunk left empty writes an
    empty part. Call it under :func:`live.planning`. Returns the plan and how many went.

    Rows from before the plan count too unless it was forced: a plain plan already left
    those files out, and a forced one was asked to predict them again."""
    missing_set = set(missing)
    if not missing_set:
        return plan, 0
    since = plan.created if plan.force else None
    done = ok_rows(plan.out, plan.model_id, exclude_run=plan.run_id, since=since)
    owners = live.live_inputs(plan.out, plan.model_id, exclude=plan.run_id)
    inputs, chunks, dropped = [], [], 0
    for index, (start, end) in enumerate(plan.chunks):
        entries = plan.inputs[start:end]
        if index in missing_set:
            entries, already, left = _claim(entries, done, owners)
            plan.already_predicted += already
            for run_id, n in left.items():
                plan.in_live_runs[run_id] = plan.in_live_runs.get(run_id, 0) + n
            dropped += already + sum(left.values())
        chunks.append([len(inputs), len(inputs) + len(entries)])
        inputs.extend(entries)
    if dropped:
        paths = {e["path"] for e in inputs}
        plan.inputs, plan.chunks = inputs, chunks
        plan.duplicates = [
            d for d in plan.duplicates if d["path"] in paths and d["same_as"] in paths
        ]
        plan.save()
    return plan, dropped
