"""Prediction runs, as every front end uses them: plan, submit, run here, status, wait,
resume, list and read. The CLI, the page, the demo and the Python API call these and
only parse and format; where the work runs is the dispatcher's business."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError, DataError, StorageError
from anigenre.core.storage import open_store
from anigenre.jobs.runs import live
from anigenre.jobs.runs.index import index_home, indexed_out_dir, list_runs, load_plan
from anigenre.jobs.runs.layout import MANIFEST, run_folder
from anigenre.jobs.runs.markers import clear_failure, finalize
from anigenre.jobs.runs.parts import PartCounts, missing_chunks, read_part, still_complete
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.runs.status import INTERRUPTED, RunStatus, run_status, status_from_manifest
from anigenre.jobs.service.dispatch import Dispatcher
from anigenre.jobs.service.hints import command
from anigenre.jobs.stages.predict import claim_run, plan_prediction, planning_lock

if TYPE_CHECKING:  # every command line imports this module; most never make a DataFrame
    import pandas as pd

Location = Path | str  # a local path, or an s3://bucket/prefix URI


def plan(
    settings: Settings,
    inputs: Sequence[Location],
    *,
    model: str = "latest",
    out: Location | None = None,
    top_k: int = 4,
    chunk_size: int | None = None,
    force: bool = False,
    engine: str | None = None,
) -> RunPlan:
    """Check the model, hash the inputs, write and record the plan. The run is held by
    this process until it runs or queues it (jobs.runs.live). A plan with no inputs
    (nothing new) is neither written nor recorded."""
    return plan_prediction(
        settings,
        list(inputs),
        model_id=model,
        out_dir=out,
        top_k=top_k,
        chunk_size=chunk_size or settings.predict_chunk_size,
        force=force,
        engine=engine,
        hold=True,
    )


@dataclass(frozen=True)
class Submitted:
    plan: RunPlan
    chunks: int  # sent to the dispatcher

    @property
    def run_id(self) -> str | None:
        """None when there was nothing new to predict (no run was recorded)."""
        return self.plan.run_id if self.plan.inputs else None

    def describe(self) -> str:
        p = self.plan
        return (
            f"run {p.run_id}: {len(p.inputs)} file(s) in {self.chunks} chunk(s) queued on "
            "'predict'"
            + (f"; {p.already_predicted} already predicted" if p.already_predicted else "")
            + (f"; {len(p.duplicates)} duplicate(s)" if p.duplicates else "")
        )


def submit(
    settings: Settings,
    inputs: Sequence[Location],
    dispatcher: Dispatcher,
    on_planned: Callable[[RunPlan], None] | None = None,
    **plan_args,
) -> Submitted:
    """Plan, then hand every chunk to ``dispatcher``; a run with nothing to send is
    finalised at once. In-process, this returns when the run is done. ``on_planned``
    hears the plan before any chunk is sent (a front end says what it is about to do)."""
    p = plan(settings, inputs, **plan_args)
    if not p.inputs:
        return Submitted(p, 0)
    try:
        if on_planned:
            on_planned(p)
        sent = dispatcher.send_chunks(p)
    finally:
        live.release(p.files)  # queued (or done) now: the planner's hold is not needed
    if not sent:
        finalize(p)
    return Submitted(p, sent)


def status(settings: Settings, run_id: str, counts: PartCounts | None = None) -> RunStatus:
    """How the run stands; a run whose files are gone or damaged is a DataError."""
    p = load_plan(index_home(settings), run_id, settings.s3)
    try:
        return run_status(p, counts, stall_after_s=settings.run_stall_after_s)
    except FileNotFoundError as exc:
        why = f"{exc.filename} is gone; was its output folder moved or deleted?"
    except OSError as exc:
        why = str(StorageError.from_os(exc, action="read"))
    except (ValueError, TypeError, KeyError) as exc:
        why = f"its files are damaged ({type(exc).__name__}: {exc})"
    except AnigenreError as exc:
        why = str(exc)
    raise DataError(f"run {run_id}: unreadable: {why}")


def predicted_nothing(s: RunStatus) -> bool:
    """A complete run with files and not one ok row (its ``note`` says so): a command
    that ran it or waited for it fails, so that cron notices."""
    return s.complete and s.rows_total > 0 and s.rows_ok == 0


def is_run(settings: Settings, run_id: str) -> bool:
    return run_id in list_runs(index_home(settings), settings.s3)


def wait(
    settings: Settings,
    run_id: str,
    *,
    timeout: float | None = None,
    on_progress: Callable[[RunStatus], None] | None = None,
    on_note: Callable[[str | None], None] | None = None,
    idle_hint: Callable[[], str | None] | None = None,
    poll_s: float = 0.5,
) -> RunStatus:
    """Block until the run is complete; its final status. A run whose every part is
    written but whose finalising worker died is finalised here. Raises DataError when
    it failed or was interrupted (nothing would finish it), AnigenreError on timeout
    (its chunks stay queued), with ``idle_hint()`` added to say why. ``on_note`` hears
    each new stall, and its end, once."""
    p = load_plan(index_home(settings), run_id, settings.s3)
    counts = PartCounts()
    deadline = None if timeout is None else time.monotonic() + timeout
    told = None
    while True:
        s = run_status(p, counts=counts, stall_after_s=settings.run_stall_after_s)
        if on_progress:
            on_progress(s)
        if s.chunks_done == s.chunks_total:
            if not s.complete:
                finalize(p)
            return run_status(p)
        resume = command(settings, f"jobs resume {run_id}")
        if s.failed:
            raise DataError(f"run {run_id} failed: {s.failed}; '{resume}' retries it")
        if s.state == INTERRUPTED:
            raise DataError(f"run {run_id} was interrupted: {s.note}; '{resume}' finishes it")
        if s.note != told:
            if on_note and (s.note or told):
                on_note(s.note)
            told = s.note
        if deadline is not None and time.monotonic() > deadline:
            hint = idle_hint() if idle_hint else None
            # Its chunks are still queued: resuming now would queue them a second time.
            raise AnigenreError(
                f"run {run_id} not complete after {timeout:.0f} s "
                f"({s.chunks_done}/{s.chunks_total} chunks); its chunks stay queued: "
                f"'{command(settings, f'jobs wait {run_id}')}' waits again"
                + (f"; {hint}" if hint else "")
            )
        time.sleep(poll_s)


@dataclass(frozen=True)
class Resumed:
    run_id: str
    chunks: int  # the chunks that had no part, now run or queued
    dropped: int  # files left to other runs that predicted or own them since
    queued: bool
    status: RunStatus | None  # in-process: how it ended


def resume(settings: Settings, run_id: str, dispatcher: Dispatcher) -> Resumed:
    """Finish a run: its missing chunks re-queued, or run here without a broker. Files
    that other runs predicted (or own) since it was planned leave its missing chunks, so
    a resume never writes a second row for a file."""
    p = load_plan(index_home(settings), run_id, settings.s3)
    p, dropped = claim_run(p, resume=True, lock=planning_lock(settings, p.out))
    missing = missing_chunks(p)
    try:
        if dispatcher.queued:
            dispatcher.forget_resends(run_id)
        if missing:
            clear_failure(p)  # queued or run here now: a damaged part's failure is over
            dispatcher.send_chunks(p, missing)
        else:
            finalize(p)  # every part is there: only the manifest was missing, if that
    finally:
        live.release(p.files)  # queued, done, or failed here: no longer this process's
    return Resumed(
        run_id,
        len(missing),
        dropped,
        dispatcher.queued,
        None if dispatcher.queued else status(settings, run_id),
    )


@dataclass(frozen=True)
class RunEntry:
    """One line of a runs list: its status, or why it could not be read."""

    run_id: str
    out_dir: str | None
    model_id: str | None
    created: str | None
    status: RunStatus | None
    error: str | None = None


def runs(settings: Settings, limit: int | None = None, offset: int = 0) -> list[RunEntry]:
    """The recorded runs, newest first (run ids sort by creation time); ``limit``: only
    that many, after the newest ``offset``. One unreadable run does not hide the others."""
    return runs_page(settings, limit, offset).entries


@dataclass(frozen=True)
class RunsPage:
    """One page of the runs list, newest first, and how many runs there are in all."""

    entries: list[RunEntry]
    total: int
    offset: int

    @property
    def more(self) -> int:
        """Runs older than this page."""
        return max(0, self.total - self.offset - len(self.entries))


def runs_page(settings: Settings, limit: int | None = 20, offset: int = 0) -> RunsPage:
    """Runs ``offset`` to ``offset + limit`` of the list, newest first (``limit`` None:
    all of them). The index is listed by key only (run ids sort by creation time) and
    only the page's runs are read, so a page costs the same with ten runs recorded or
    ten thousand, but for the listing (one LIST request per thousand runs on S3)."""
    ids = list(reversed(list_runs(index_home(settings), settings.s3)))
    page = ids[offset:] if limit is None else ids[offset : offset + limit]
    # Side by side: a run in a bucket that does not answer waits out the S3 client's
    # retries (1-2 s), so a list waits for its slowest run, not for the sum of them.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(page)))) as pool:
        entries = list(pool.map(lambda run_id: _entry(settings, run_id), page))
    return RunsPage(entries, len(ids), offset)


def _entry(settings: Settings, run_id: str) -> RunEntry:
    home = index_home(settings)
    out_dir = None  # where it writes, named on the entry even when that cannot be read
    try:
        out_dir = indexed_out_dir(home, run_id, settings.s3)
        out = open_store(out_dir, settings.s3)
        files = out.child(run_folder(run_id))
        if files.exists(MANIFEST):
            m = json.loads(files.read_bytes(MANIFEST))
            if still_complete(out, run_id, m):  # else a part was set aside: read it all
                s = status_from_manifest(run_id, m)
                return RunEntry(run_id, str(out_dir), m.get("model_id"), m.get("created"), s)
        p = load_plan(home, run_id, settings.s3)
        s = status(settings, run_id)
    except AnigenreError as exc:
        where = None if out_dir is None else str(out_dir)
        return RunEntry(run_id, where, None, None, None, error=str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged entry or manifest
        why = f"run {run_id}: unreadable: {type(exc).__name__}: {exc}"
        where = None if out_dir is None else str(out_dir)
        return RunEntry(run_id, where, None, None, None, error=why)
    return RunEntry(run_id, str(out_dir), p.model_id, p.created, s)


def table(settings: Settings, run_id: str) -> pd.DataFrame:
    """The run's rows as written so far, in input order, with a ``run_id`` column."""
    import pandas as pd

    p = load_plan(index_home(settings), run_id, settings.s3)
    found = (read_part(p, i) for i in range(len(p.chunks)))  # a damaged one: a DataError
    parts = [t.to_pandas() for t in found if t is not None]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    rows.insert(0, "run_id", run_id)
    return rows
