"""Publishing work on the broker: the client side of the Celery tasks. No TensorFlow here."""

from __future__ import annotations

import redis
from anigenre.jobs.queue.counter import chunks_sent
from anigenre.jobs.queue.sweeper import RESENT_PREFIX
from anigenre.jobs.runs.index import index_home, mark_active
from anigenre.jobs.runs.markers import mark_queued
from anigenre.jobs.runs.plan import RunPlan
from celery import Celery, group


def send_chunks(app: Celery, plan: RunPlan, indices: list[int] | None = None):
    """One task per chunk in a flat group (no chord: the Redis backend makes chords
    fragile); the chunk that completes the run's count in the broker finalises it
    (jobs.queue.counter). Returns the GroupResult, or None when there was nothing to send."""
    again = indices is not None  # a resume or the sweeper: these may have counted before
    indices = list(range(len(plan.chunks))) if indices is None else indices
    if not indices:
        return None
    if again:
        chunks_sent(redis.Redis.from_url(app.conf.broker_url), plan.run_id, indices)
    sent = group(
        app.signature("jobs.tasks.predict_chunk", args=(plan.run_id, i), queue="predict")
        for i in indices
    ).apply_async()
    mark_queued(plan)
    # After the queued marker: a sweep that dropped the run's active marker meanwhile
    # looks again and sees it queued (jobs.queue.sweeper._watched).
    settings = app.anigenre_settings
    mark_active(index_home(settings), plan.run_id, settings.s3)
    return sent


def send_task(app: Celery, name: str, queue: str, **kwargs) -> str:
    return app.send_task(name, kwargs=kwargs, queue=queue).id


def forget_resends(app: Celery, run_id: str) -> None:
    """A resumed run gets a fresh allowance of sweeper re-queues."""
    redis.Redis.from_url(app.conf.broker_url).delete(RESENT_PREFIX + run_id)
