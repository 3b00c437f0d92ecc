"""The inbox: a folder of posters predicted on a schedule with one model (an alias, usually).

Each tick plans a run over the whole inbox with the same planner as ``predict``, so the
posters that already have an ok row for the model, or that a live run is predicting, are
left out, and so is a poster whose same bytes already got an error row (a broken file
would otherwise make a run on every tick); a tick that finds nothing left records that
and makes no run. Inbox runs carry ``report_when_complete``: the worker that finalises
one writes its report, and a tick writes any that a dead worker left unwritten. No
Celery here (``jobs.queue.inbox`` publishes).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError, ConfigError
from anigenre.core.storage import Store, open_store
from anigenre.jobs.runs.index import index_home, indexed_out_dir, list_runs, load_plan
from anigenre.jobs.runs.layout import MANIFEST, run_folder
from anigenre.jobs.runs.plan import RunPlan, discover
from anigenre.jobs.stages.predict import plan_prediction, report_run

log = logging.getLogger(__name__)

TICK_FILE = "_inbox_tick.json"  # in the inbox's output dir: what the last tick did


@dataclass
class Tick:
    at: str
    inbox: str | None
    model_id: str | None = None
    run_id: str | None = None  # None: nothing new, or an error
    files: int = 0
    chunks: int = 0
    already_predicted: int = 0
    in_live_runs: dict[str, int] = field(default_factory=dict)
    reported: list[str] = field(default_factory=list)  # overdue reports this tick wrote
    error: str | None = None

    def line(self) -> str:
        if self.error:
            return f"inbox {self.inbox}: {self.error}"
        if self.model_id is None:
            return f"inbox {self.inbox}: no images"
        if self.run_id is None:
            live = sum(self.in_live_runs.values())
            return (
                f"inbox {self.inbox}: nothing new for {self.model_id} "
                f"({self.already_predicted} already predicted, {live} in live runs)"
            )
        return (
            f"inbox {self.inbox}: run {self.run_id} queued, {self.files} file(s) in "
            f"{self.chunks} chunk(s) for {self.model_id}"
        )


def plan_inbox(settings: Settings) -> RunPlan | None:
    """The held plan of the inbox's posters that need predicting, flagged to report when
    complete; None when the inbox holds no image at all. A plan without inputs is nothing
    new (it is not recorded)."""
    inbox = _inbox(settings)
    # An empty local inbox is quiet, not an error (an empty s3:// one is the planner's
    # "no image files found", recorded as the tick's error).
    if isinstance(inbox, Path) and not discover([inbox]):
        return None
    plan = plan_prediction(
        settings,
        [inbox],
        model_id=settings.inbox_model,
        out_dir=settings.inbox_out_dir(),
        hold=True,  # until its chunks are queued: see jobs.runs.live
        retry_errors=False,  # a broken poster is retried when its bytes change, not each tick
    )
    if plan.inputs:
        plan.report_when_complete = True
        plan.save()  # still held and not yet queued: no one else reads it before this
    return plan


def _inbox(settings: Settings):
    if not settings.inbox:
        raise ConfigError("no inbox configured; set ANIGENRE_INBOX to a folder or s3:// prefix")
    # A local inbox is a path for the planner; an s3:// one stays a URI for it.
    return settings.inbox if "://" in settings.inbox else Path(settings.inbox)


def report_page(run_id: str) -> str:
    """Where ``report_run`` writes a run's page, last of its files (jobs.runs.reports),
    relative to the run's output dir."""
    return f"reports/{run_id}/report.html"


def report_if_due(settings: Settings, plan: RunPlan) -> Path | str | None:
    """Write the report of a complete run that asked for one and has none; its folder."""
    if not plan.report_when_complete or not plan.files.exists(MANIFEST):
        return None
    if plan.out.exists(report_page(plan.run_id)):
        return None
    return report_run(settings, plan.run_id).folder


def overdue_reports(settings: Settings) -> list[str]:
    """Write the reports of complete inbox runs that have none (their finalising worker
    died, or the sweeper finalised them); the run ids. Only runs of the inbox's output dir
    are looked at, and a plan is read only for a complete run without a report."""
    home, out = index_home(settings), _out(settings)
    # How plan_run records an output dir: the URI, or the resolved local path.
    ours = str(Path(out.root).resolve()) if out.is_local else out.uri
    written = []
    for run_id in list_runs(home, settings.s3):
        try:
            if indexed_out_dir(home, run_id, settings.s3) != ours:
                continue
            if not out.child(run_folder(run_id)).exists(MANIFEST):
                continue
            if out.exists(report_page(run_id)):
                continue
        except (AnigenreError, OSError, ValueError, KeyError) as exc:
            # An index entry removed or damaged meanwhile, an old-layout run that cannot
            # be moved: not ours to mend, and no reason to skip the other runs.
            log.warning("run %s: not checked for a report (%s)", run_id, exc)
            continue
        try:
            if report_if_due(settings, load_plan(home, run_id, settings.s3)) is not None:
                written.append(run_id)
        except Exception as exc:  # noqa: BLE001 - a report must never stop the inbox
            log.error("run %s: no report (%s: %s)", run_id, type(exc).__name__, exc)
    return written


def record_tick(settings: Settings, tick: Tick) -> None:
    _out(settings).write_bytes(TICK_FILE, json.dumps(asdict(tick), indent=2).encode())


def last_tick(settings: Settings) -> Tick | None:
    try:
        return Tick(**_out(settings).read_json(TICK_FILE))
    except FileNotFoundError:
        return None


def _out(settings: Settings) -> Store:
    return open_store(settings.inbox_out_dir(), settings.s3)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
