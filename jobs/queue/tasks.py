"""Celery tasks: thin wrappers that take ids, paths and request objects as JSON, call the
stages (jobs.stages.calls, which the in-process dispatcher calls too), and return small
JSON.

Tasks are ``shared_task``s: they bind to whichever app the worker built (the entry module's
or ``anigenre worker``'s), so importing this module builds no app. Names are fixed strings,
so messages already queued keep working whatever the module is called.

A model is loaded (and TensorFlow imported, for the Keras engine) only inside a task, so
it happens once per worker process after the fork (TensorFlow is not fork-safe) and never
in beat or the CLI.
"""

from __future__ import annotations

import contextlib
import logging
import resource

import redis
from anigenre.core.errors import AnigenreError, RetryableError
from anigenre.jobs.queue import counter
from anigenre.jobs.runs.markers import finalize
from anigenre.jobs.runs.parts import all_written, chunk_done, missing_chunks
from anigenre.jobs.stages import calls
from celery import Task, shared_task

log = logging.getLogger(__name__)


def _settings(task: Task):
    return task.app.anigenre_settings


class PredictTask(Task):
    """Keeps one loaded Predictor per worker process (Celery makes one Task per process),
    on the engine the run was planned with."""

    _predictors: dict | None = None
    _redis = None

    def redis(self):
        """The broker's Redis, for the run's count (jobs.queue.counter); one per process."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=10)
        return self._redis

    def predictor(self, model_id: str, engine: str):
        from anigenre.jobs.stages import load_predictor

        if self._predictors is None:
            self._predictors = {}
        key = (model_id, engine)
        if key not in self._predictors:
            self._predictors.clear()  # one model in memory at a time
            self._predictors[key] = load_predictor(_settings(self), model_id, engine)
        return self._predictors[key]


@shared_task(
    name="jobs.tasks.predict_chunk",
    base=PredictTask,
    bind=True,
    autoretry_for=(RetryableError,),
    retry_backoff=True,
    max_retries=5,
)
def predict_chunk(self, run_id: str, index: int) -> dict:
    from anigenre.jobs.runs.chunks import execute_chunk
    from anigenre.jobs.runs.index import index_home, load_plan

    settings = _settings(self)
    # The plan's header and this chunk's manifest: nothing here grows with the run.
    plan = load_plan(index_home(settings), run_id, settings.s3)
    if chunk_done(plan, index):
        # A message delivered twice (restored after a slow start, or re-queued by the
        # sweeper) finds its part written: the rows are there, so skip the model.
        result = {"run_id": run_id, "chunk": index, "skipped": True}
    else:
        result = execute_chunk(plan, index, self.predictor(plan.model_id, plan.engine))
    # No chord: the chunk that completes the broker's count reads the parts, once, and
    # finalises (jobs.queue.counter); doing it twice is harmless.
    if _last_written(self, plan, index) and not missing_chunks(plan):
        finalize(plan)
        _finished(self, plan)
        result["finalized"] = True
        if plan.report_when_complete:
            result["report"] = _report(self, plan)
    result["rss_kb"] = current_rss_kb()
    return result


def _last_written(task: PredictTask, plan, index: int) -> bool:
    """Whether every chunk of the run has counted its part (this one now included). A
    broker that does not answer falls back on one listing of the parts: the rows are
    written, and the sweep finalises the run if this misses it."""
    try:
        return counter.chunk_written(task.redis(), plan.run_id, index) >= len(plan.chunks)
    except redis.RedisError as exc:
        log.warning("run %s: chunk %d not counted (%s); listing its parts", plan.run_id, index, exc)
        return all_written(plan)


def _finished(task: PredictTask, plan) -> None:
    """Finalised: its count in the broker and its active marker (the sweep's) can go."""
    from anigenre.jobs.runs.index import index_home, mark_finished

    settings = _settings(task)
    with contextlib.suppress(redis.RedisError):
        counter.forget(task.redis(), plan.run_id)
    try:
        mark_finished(index_home(settings), plan.run_id, settings.s3)
    except (AnigenreError, OSError) as exc:  # the sweep drops it when it next looks
        log.warning("run %s: active marker left (%s)", plan.run_id, exc)


def _report(task: Task, plan) -> str | None:
    """The report a finished inbox run asked for. Its rows are written whatever happens
    here, so a report that fails is logged, not raised; the next inbox tick retries it."""
    from anigenre.jobs.stages.inbox import report_if_due

    try:
        folder = report_if_due(_settings(task), plan)
    except Exception as exc:  # noqa: BLE001 - the run is complete whatever the report does
        log.error(
            "run %s: no report (%s: %s); the next inbox tick tries again",
            plan.run_id,
            type(exc).__name__,
            exc,
        )
        return None
    return str(folder) if folder else None


def current_rss_kb() -> int:
    """Resident size now (ru_maxrss only ever grows, so it cannot show a leak levelling off)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@shared_task(
    name="jobs.tasks.scrape",
    bind=True,
    autoretry_for=(RetryableError,),
    retry_backoff=True,
    max_retries=3,
)
def scrape(self, request: dict) -> dict:
    return calls.scrape(_settings(self), request)


@shared_task(name="jobs.tasks.preprocess", bind=True)
def preprocess(
    self, years: list | None = None, require_score: bool = False, require_studio: bool = False
) -> dict:
    return calls.preprocess(_settings(self), years, require_score, require_studio)


@shared_task(name="jobs.tasks.import_dataset", bind=True)
def import_dataset(self, folder: str, replace: bool = False) -> dict:
    return calls.import_dataset(_settings(self), folder, replace)


@shared_task(name="jobs.tasks.train", bind=True)
def train(self, config: dict) -> dict:
    return calls.train(_settings(self), config)


@shared_task(name="jobs.tasks.predict_inbox", bind=True)
def predict_inbox(self) -> dict:
    """Beat's inbox tick (jobs.queue.inbox)."""
    from dataclasses import asdict

    from anigenre.jobs.queue.inbox import tick

    return asdict(tick(self.app, _settings(self)))
