"""Runs, models and reports as plain data, for front ends that answer in JSON (the HTTP
API). The states are RunStatus's (jobs.runs.status), the ones ``jobs status`` prints."""

from __future__ import annotations

import dataclasses

from anigenre.config import Settings
from anigenre.core.errors import DataError
from anigenre.core.storage import open_store
from anigenre.jobs.runs.index import index_home, indexed_out_dir
from anigenre.jobs.runs.status import QUEUED, RUNNING, RunStatus
from anigenre.jobs.service import runs
from anigenre.models.synced import Registry

REPORT_PAGE = "report.html"


def run_view(
    s: RunStatus, entry: runs.RunEntry | None = None, waiting_for: int | None = None
) -> dict:
    """How a run stands: ``done`` of ``total`` files have a row (``ok`` + ``error``),
    then every field ``jobs status --json`` prints, under its names. ``waiting_for``: the
    run waits in this process until one of that many runs ahead of it ends (no broker,
    jobs.service.background), so it is ``queued``, though its lease reads running."""
    view = {
        "run_id": s.run_id,
        "state": s.state,
        "done": s.rows_ok + s.rows_error,
        "total": s.rows_total,
        "ok": s.rows_ok,
        "error": s.rows_error,
        "kind": "run",
        **dataclasses.asdict(s),
    }
    if waiting_for and s.state == RUNNING:
        view["state"] = QUEUED
        view["note"] = (
            f"waiting: without a broker this server predicts {waiting_for} run(s) at a "
            "time; it starts when one of them ends"
        )
    if entry is not None:
        view |= {"out_dir": entry.out_dir, "model_id": entry.model_id, "created": entry.created}
    return view


def entry_view(entry: runs.RunEntry, waiting_for: int | None = None) -> dict:
    """A line of the runs list, as ``jobs list --json`` has it: one that cannot be read
    has no state and says why in ``unreadable`` (``error`` counts error rows)."""
    if entry.status is None:
        return {
            "run_id": entry.run_id,
            "state": None,
            "out_dir": entry.out_dir,
            "unreadable": entry.error,
        }
    return run_view(entry.status, entry, waiting_for)


def models_view(settings: Settings) -> dict:
    """Every model, oldest first, with its aliases; ``latest``; damaged ones and why."""
    registry = Registry(settings)
    listing = registry.listing()
    named = registry.names()
    models = [
        {
            "model_id": m.model_id,
            "backbone": m.backbone,
            "created": m.created,
            "aliases": named.get(m.model_id, []),
            "test_macro_map": m.metrics_summary.get("test", {}).get("macro_map"),
        }
        for m in listing.models
    ]
    aliases = {alias: model_id for model_id, names in named.items() for alias in names}
    return {
        "latest": listing.models[-1].model_id if listing.models else None,
        "aliases": dict(sorted(aliases.items())),
        "models": models,
        "damaged": [{"model": name, "why": why} for name, why in listing.problems.items()],
    }


def report_page(settings: Settings, run_id: str) -> bytes:
    """The run's report.html, written first if the run is complete and has none yet (as
    ``anigenre report RUN_ID`` writes it). DataError while the run is not complete."""
    from anigenre.jobs.stages.predict import report_run

    home = index_home(settings)
    folder = open_store(indexed_out_dir(home, run_id, settings.s3), settings.s3).child(
        "reports", run_id
    )
    if not folder.exists(REPORT_PAGE):
        s = runs.status(settings, run_id)
        if not s.complete:
            raise DataError(
                f"run {run_id} is {s.state}; its report can be made once it is complete"
            )
        report_run(settings, run_id)
    return folder.read_bytes(REPORT_PAGE)
