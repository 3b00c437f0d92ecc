"""How far a run has got, read from its parts and markers on disk (no broker needed).

Besides counts, a run has a state: ``queued`` (on the broker, no chunk done yet);
``running``; ``stalled`` (queued, and the workers'
sweep found chunks whose worker died or whose message was lost, or no chunk finished for
``stall_after_s``); ``interrupted`` (in-process, and its process is gone: see
jobs.runs.lease); ``failed`` (the sweeper gave up on chunks, or a part was damaged and
set aside: jobs.runs.parts); ``complete``. A stalled, interrupted or failed run has no
ETA.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from anigenre.jobs.runs.layout import MANIFEST
from anigenre.jobs.runs.layout import QUEUED as QUEUED_FILE
from anigenre.jobs.runs.lease import STALE_S, lease_problem, read_lease
from anigenre.jobs.runs.markers import failure
from anigenre.jobs.runs.parts import PartCounts, still_complete
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.runs.stalls import describe, read_stalls

QUEUED, RUNNING, STALLED, INTERRUPTED, FAILED, COMPLETE = (
    "queued",
    "running",
    "stalled",
    "interrupted",
    "failed",
    "complete",
)
STALL_AFTER_S = 120.0  # Settings.run_stall_after_s


@dataclass
class RunStatus:
    run_id: str
    chunks_done: int
    chunks_total: int
    rows_ok: int
    rows_error: int
    rows_total: int
    complete: bool
    rate_per_s: float | None
    eta_s: float | None
    failed: str | None = None
    state: str = RUNNING
    note: str | None = None  # why it is stalled or interrupted; complete: predicted nothing


def run_status(
    plan: RunPlan,
    counts: PartCounts | None = None,
    *,
    stall_after_s: float = STALL_AFTER_S,
    now: dt.datetime | None = None,
) -> RunStatus:
    """Progress from the parts on disk; pass the same ``counts`` to successive polls.
    A complete run is read from its manifest, which holds the verified counts, once a
    listing shows its parts unchanged; a damaged one makes it a failed run (its manifest
    withdrawn, see jobs.runs.parts), named by the failure."""
    if plan.files.exists(MANIFEST):
        manifest = json.loads(plan.files.read_bytes(MANIFEST))
        if still_complete(plan.out, plan.run_id, manifest):
            return status_from_manifest(plan.run_id, manifest)
    counts = counts or PartCounts()
    counts.look(plan)  # one listing per poll
    ok = err = done = 0
    latest = None
    missing = set()
    for i in range(len(plan.chunks)):
        part = counts(plan, i)
        if part is None:
            missing.add(i)
            continue
        done += 1
        ok += part[0]
        err += part[1]
        latest = max(latest or part[2], part[2])
    rows = ok + err
    elapsed = (latest - dt.datetime.fromisoformat(plan.created).timestamp()) if latest else None
    rate = rows / elapsed if elapsed and elapsed > 0 else None
    remaining = len(plan.inputs) - rows
    failed = failure(plan)
    if failed:
        state, note = FAILED, None
    elif not missing:
        state, note = RUNNING, None  # only the manifest is to come
    else:
        now = now or dt.datetime.now(dt.UTC)
        state, note = _health(plan, missing, latest, stall_after_s, now)
        if state == RUNNING and not done and _queued_at(plan) is not None:
            state = QUEUED
    return RunStatus(
        run_id=plan.run_id,
        chunks_done=done,
        chunks_total=len(plan.chunks),
        rows_ok=ok,
        rows_error=err,
        rows_total=len(plan.inputs),
        complete=False,
        rate_per_s=rate,
        eta_s=None
        if state in (STALLED, INTERRUPTED, FAILED)  # nothing is moving it
        else (remaining / rate if rate and remaining else (0.0 if not remaining else None)),
        failed=failed,
        state=state,
        note=note,
    )


def _health(
    plan: RunPlan, missing: set[int], latest: float | None, stall_after_s: float, now: dt.datetime
) -> tuple[str, str | None]:
    queued_at = _queued_at(plan)
    if queued_at is None:  # in-process: its lease says whether a process is on it
        lease = read_lease(plan.files)
        age = (now - dt.datetime.fromisoformat(plan.created)).total_seconds()
        if lease is None and age < STALE_S:
            return RUNNING, None  # a run just planned takes its lease in a moment
        problem = lease_problem(lease, now)
        return (RUNNING, None) if problem is None else (INTERRUPTED, problem)
    stalls = {i: s for i, s in read_stalls(plan).items() if i in missing}
    if stalls:
        return STALLED, describe(stalls)
    since = max(queued_at.timestamp(), latest or 0.0)
    if now.timestamp() - since > stall_after_s:
        # A clock time, not a duration: the note stays the same poll after poll.
        clock = dt.datetime.fromtimestamp(since).strftime("%H:%M:%S")
        return STALLED, (
            f"no chunk finished since {clock}; is a predict worker running "
            "('anigenre worker')? Chunks of a dead one are re-queued by the others' sweep"
        )
    return RUNNING, None


def _queued_at(plan: RunPlan) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(
            json.loads(plan.files.read_bytes(QUEUED_FILE))["queued_at"]
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return dt.datetime.fromisoformat(plan.created)  # queued, when we cannot say


def status_from_manifest(run_id: str, manifest: dict) -> RunStatus:
    """A complete run's status from its small ``_manifest.json`` alone: a list of many
    large runs need not read their plans, which list every input."""
    took = (
        dt.datetime.fromisoformat(manifest["finished"])
        - dt.datetime.fromisoformat(manifest["created"])
    ).total_seconds()
    chunks, rows = len(manifest["parts"]), manifest["rows"]
    return RunStatus(
        run_id=run_id,
        chunks_done=chunks,
        chunks_total=chunks,
        rows_ok=manifest["ok"],
        rows_error=manifest["error"],
        rows_total=rows,
        complete=True,
        rate_per_s=rows / took if took > 0 and rows else None,
        eta_s=0.0,
        state=COMPLETE,
        # Complete, and yet no answer: said here, so that no reader takes it for a success.
        note=f"nothing was predicted: all {rows} file(s) are error rows"
        if rows and not manifest["ok"]
        else None,
    )
