"""A run's marker files: queued, failed, and the manifest that marks it complete."""

from __future__ import annotations

import datetime as dt
import json

from anigenre.core.errors import DataError
from anigenre.jobs.runs.layout import FAILED, MANIFEST, QUEUED
from anigenre.jobs.runs.parts import all_counts, part_sizes
from anigenre.jobs.runs.plan import RunPlan


def finalize(plan: RunPlan, now: dt.datetime | None = None) -> dict:
    """Verify every part, then write ``_manifest.json``. Safe to call twice: a complete
    run keeps the manifest (and so the finish time) it already has. The manifest records
    each part's size, so that listing the parts shows one changed since
    (jobs.runs.parts.still_complete); a failure recorded earlier is over."""
    if plan.files.exists(MANIFEST):
        return json.loads(plan.files.read_bytes(MANIFEST))
    counts = all_counts(plan)  # one listing; parts already checked are not read again
    missing = [i for i, c in enumerate(counts) if c is None]
    if missing:
        raise DataError(f"run {plan.run_id} is missing {len(missing)} part(s): {missing[:10]}")
    ok = sum(c[0] for c in counts)
    error = sum(c[1] for c in counts)
    manifest = {
        "run_id": plan.run_id,
        "model_id": plan.model_id,
        "complete": True,
        "rows": ok + error,
        "ok": ok,
        "error": error,
        "parts": [plan.part_name(i) for i in range(len(plan.chunks))],
        "sizes": part_sizes(plan),
        "duplicates": list(plan.duplicates),
        "already_predicted": plan.already_predicted,
        "created": plan.created,
        "finished": (now or dt.datetime.now(dt.UTC)).isoformat(),
    }
    plan.files.write_bytes(MANIFEST, json.dumps(manifest, indent=2).encode())
    clear_failure(plan)
    return manifest


def mark_queued(plan: RunPlan, now: dt.datetime | None = None) -> None:
    """Written once a run's chunks are published: before that a missing chunk may just not
    be sent yet, and in-process runs never get it, so the sweeper leaves those alone."""
    at = (now or dt.datetime.now(dt.UTC)).isoformat()
    plan.files.write_bytes(QUEUED, json.dumps({"queued_at": at}).encode())
    plan.files.delete(FAILED)


def mark_failed(plan: RunPlan, chunks: list[int], resends: int) -> None:
    reason = (
        f"chunk(s) {chunks[:10]} still have no part after {resends} re-queues: "
        "their task fails on the workers (see the worker logs)"
    )
    plan.files.write_bytes(FAILED, json.dumps({"chunks": chunks, "reason": reason}).encode())


def clear_failure(plan: RunPlan) -> None:
    """The run is being finished (resumed here, or complete): it has failed no more."""
    plan.files.delete(FAILED)


def failure(plan: RunPlan) -> str | None:
    """Why the run failed, or None."""
    try:
        return json.loads(plan.files.read_bytes(FAILED))["reason"]
    except FileNotFoundError:
        return None
