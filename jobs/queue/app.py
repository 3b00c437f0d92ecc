"""The Celery app factory. Building an app reads nothing but the Settings it is given:
the module-level app Celery's own command line needs lives in ``jobs.queue.worker``."""

from __future__ import annotations

import logging
import sys

from anigenre.config import Settings
from anigenre.config.settings import interval_seconds
from anigenre.jobs.queue.bootstep import SweeperStep
from celery import Celery, signals
from celery.schedules import crontab

QUEUES = ("scrape", "train", "predict")
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def create_app(settings: Settings) -> Celery:
    broker = settings.broker_url or DEFAULT_BROKER
    app = Celery("anigenre", broker=broker, backend=broker, include=["anigenre.jobs.queue.tasks"])
    transport = {
        "visibility_timeout": settings.task_visibility_timeout_s,
        "unacked_restore_interval": settings.broker_restore_interval_s,
        "unacked_restore_throttle": 1,
        # A worker killed while it holds this lock blocks every restore until it expires
        # (kombu's default: 300 s); restoring takes milliseconds, and a second restorer
        # racing the first is harmless (each restore is a WATCH transaction).
        "unacked_mutex_expire": 30,
        "socket_connect_timeout": 5,
        # Without a socket timeout a publish to a vanished Redis can wait forever.
        "socket_timeout": 30,
        "health_check_interval": 10,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # never pickle: a message must not be able to run code
        result_accept_content=["json"],
        task_acks_late=True,  # ack after the work: a killed worker's task is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one task, not a backlog others need
        broker_transport_options=transport,
        result_backend_transport_options={"socket_connect_timeout": 5, "socket_timeout": 30},
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(settings.task_time_limit_s - 60, 1),
        worker_max_memory_per_child=settings.worker_max_memory_per_child_kb,
        task_default_queue="predict",
        task_queues=None,
        task_create_missing_queues=True,
        task_routes={
            "jobs.tasks.scrape": {"queue": "scrape"},
            "jobs.tasks.preprocess": {"queue": "train"},
            "jobs.tasks.import_dataset": {"queue": "train"},
            "jobs.tasks.train": {"queue": "train"},
            "jobs.tasks.predict_chunk": {"queue": "predict"},
            "jobs.tasks.predict_inbox": {"queue": "predict"},
        },
        # Beat's schedule file belongs with the data, not in whatever folder beat started in.
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        result_expires=7 * 86400,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
    )
    app.anigenre_settings = settings
    app.steps["worker"].add(SweeperStep)
    return app


@signals.after_setup_logger.connect
def _one_line_per_task(loglevel=logging.INFO, **_) -> None:
    """At INFO a worker logs one line per task: the "succeeded in" (or "raised") line
    says everything its "Task ... received" line does, so that one is kept for DEBUG."""
    if loglevel > logging.DEBUG:
        logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)


def beat_schedule(settings: Settings) -> dict:
    schedule = {}
    if settings.schedule_incremental_scrape:
        schedule["incremental-scrape"] = _scrape_entry(settings)
    if settings.inbox:
        schedule["inbox"] = _inbox_entry(settings)
    return schedule


def _scrape_entry(settings: Settings) -> dict:
    from anigenre.core.parsing import parse_year_range
    from anigenre.scraper.request import ScrapeRequest

    request = ScrapeRequest(
        years=parse_year_range(settings.schedule_scrape_years),
        incremental=True,
        overlap_s=settings.incremental_overlap_s,
    )
    return {
        "task": "jobs.tasks.scrape",
        "schedule": cron(settings.schedule_incremental_scrape),
        "kwargs": {"request": request.to_json()},
    }


def _inbox_entry(settings: Settings) -> dict:
    """Ticks go to the predict workers. One given as seconds expires when the next is due,
    so ticks seconds apart do not pile up behind a run's chunks: each plans the whole
    inbox, so the next does what a dropped one would have."""
    entry = {"task": "jobs.tasks.predict_inbox"}
    seconds = interval_seconds(settings.inbox_schedule)
    if seconds is None:
        return entry | {"schedule": cron(settings.inbox_schedule)}
    return entry | {"schedule": seconds, "options": {"expires": seconds}}


def cron(text: str) -> crontab:
    """A five-field crontab line as Celery's schedule. By keyword: Celery's positional
    order (minute, hour, day of week, ...) is not crontab's."""
    minute, hour, day, month, weekday = text.split()
    return crontab(
        minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday
    )


WORKER_MODULE = "anigenre.jobs.queue.worker"  # for ``celery -A``: flower, inspect ping


def start_worker(
    app: Celery,
    queues: str,
    name: str,
    *,
    concurrency: int = 1,
    loglevel: str = "INFO",
    no_color: bool = False,
) -> int:
    """Run a worker of ``app`` in this process until it is stopped; its exit code.

    Started from ``app.Worker``, not Celery's command line: importing that (click and
    every ``celery`` subcommand) took a fifth of a predict worker's cold start. Mingle
    and gossip stay off. Mingle waits a second at start for other workers' revoked tasks
    and clocks, and gossip follows their events; nothing here revokes tasks or elects a
    leader. Heartbeats and task events stay on for flower and ``inspect``.
    """
    from celery.utils.nodenames import default_nodename, host_format

    worker = app.Worker(
        hostname=host_format(default_nodename(name)),
        queues=queues,
        concurrency=concurrency,
        loglevel=loglevel,
        task_events=True,
        without_mingle=True,
        without_gossip=True,
        no_color=no_color or None,  # None: colour when the log is a terminal
    )
    worker.start()
    return worker.exitcode or 0


def worker_argv(queues: str, name: str, *, loglevel: str = "INFO") -> list[str]:
    """The command line of one single-process worker, as the demo, benches and tests start
    it: ``anigenre worker``, as deployments do, with its settings from the environment."""
    argv = [sys.executable, "-m", "anigenre.jobs.cli", "worker", "-Q", queues]
    return argv + ["-c", "1", "-n", f"{name}@%h", "--loglevel", loglevel]
