"""Queueing work on the broker: the client side of the Celery tasks. No TensorFlow here."""

from __future__ import annotations

from celery import Celery, group
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from config import Settings
from core.errors import ConfigError, NetworkError
from jobs.celery_app import create_app
from jobs.runs import RunPlan, mark_queued


def broker_app(settings: Settings) -> Celery:
    """An app for ``settings.broker_url``, checked to answer before anything is planned."""
    if not settings.broker_url:
        raise ConfigError(
            "no broker configured; pass --broker redis://HOST:6379/0 or set ANIGENRE_BROKER_URL"
        )
    app = create_app(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except (OperationalError, OSError) as exc:
        # Masked: a broker URL may carry a password, and this line lands in terminals and logs.
        where = maybe_sanitize_url(settings.broker_url)
        raise NetworkError(f"cannot reach the broker at {where} ({exc})") from None
    return app


def send_chunks(app: Celery, plan: RunPlan, indices: list[int] | None = None):
    """One task per chunk in a flat group (no chord: the Redis backend makes chords
    fragile); each chunk finalises the run when it sees every part written. Returns the
    GroupResult, or None when there was nothing to send."""
    indices = list(range(len(plan.chunks))) if indices is None else indices
    if not indices:
        return None
    sent = group(
        app.signature("jobs.tasks.predict_chunk", args=(plan.run_id, i), queue="predict")
        for i in indices
    ).apply_async()
    mark_queued(plan)
    return sent


def send_task(app: Celery, name: str, queue: str, **kwargs) -> str:
    return app.send_task(name, kwargs=kwargs, queue=queue).id


def worker_argv(queues: str, name: str, *, loglevel: str = "INFO", quiet: bool = True) -> list[str]:
    """The command line of one single-process worker, as the demo, benches and tests start it."""
    import sys

    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "jobs.celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        "1",
        "-n",
        f"{name}@%h",
        "--loglevel",
        loglevel,
    ]
    # Gossip, mingle and heartbeats talk to other workers; a lone one only waits on them.
    return argv + (["--without-gossip", "--without-mingle", "--without-heartbeat"] if quiet else [])


def forget_resends(app: Celery, run_id: str) -> None:
    """A resumed run gets a fresh allowance of sweeper re-queues."""
    import redis

    from jobs.sweeper import RESENT_PREFIX

    redis.Redis.from_url(app.conf.broker_url).delete(RESENT_PREFIX + run_id)
