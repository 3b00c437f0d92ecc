"""Beat's inbox tick: plan the inbox's new posters and queue them as one run."""

from __future__ import annotations

import logging

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError
from anigenre.jobs.queue.publish import send_chunks
from anigenre.jobs.runs import live
from anigenre.jobs.stages import inbox
from celery import Celery

log = logging.getLogger(__name__)


def tick(app: Celery, settings: Settings) -> inbox.Tick:
    """One tick: write overdue reports, then queue a run of what has no row for the
    inbox's model yet, or record that there is nothing new. A setting that is wrong (no
    such alias, no inbox folder) is logged and recorded, and the next tick tries again."""
    record = inbox.Tick(at=inbox.now_iso(), inbox=settings.inbox)
    try:
        record.reported = inbox.overdue_reports(settings)
        plan = inbox.plan_inbox(settings)
    except AnigenreError as exc:
        record.error = str(exc)
        log.error(record.line())
        inbox.record_tick(settings, record)
        return record
    if plan is not None:
        record.model_id = plan.model_id
        record.already_predicted = plan.already_predicted
        record.in_live_runs = dict(plan.in_live_runs)
        if plan.inputs:
            try:
                send_chunks(app, plan)  # marks it queued: from here the sweeper watches it
            finally:
                live.release(plan.files)
            record.run_id, record.files = plan.run_id, len(plan.inputs)
            record.chunks = len(plan.chunks)
    inbox.record_tick(settings, record)  # the task's own log line shows the same
    return record
