"""The worker bootstep of the predict workers' sweep (jobs.queue.sweeper): it publishes the
messages this worker holds every heartbeat, and runs the sweep on the worker's timer."""

from __future__ import annotations

import logging
import os

import redis
from anigenre.jobs.queue.publish import send_chunks
from anigenre.jobs.queue.sweeper import PREDICT_QUEUE, Sweeper, holdings_key, publish_holdings
from anigenre.jobs.runs.index import index_home
from celery import bootsteps

log = logging.getLogger(__name__)


def held_tags(worker) -> list[str] | None:
    """Delivery tags this worker holds unacknowledged, from its consumer channel's QoS
    (kombu's own record, the one it acks from); None when it cannot tell."""
    task_consumer = getattr(getattr(worker, "consumer", None), "task_consumer", None)
    try:
        qos = task_consumer.channel.qos
        # Acked tags linger in _delivered until kombu's next append flushes _dirty.
        return [tag for tag in list(qos._delivered) if tag not in qos._dirty]
    except (AttributeError, RuntimeError):
        return None


class SweeperStep(bootsteps.StartStopStep):
    """Heartbeat and sweep on the worker's timer, in workers that consume the predict queue.

    With the prefork pool the timer runs in the worker's event loop, which tasks do not
    block (they run in the pool's processes); without an event loop it is a thread. So a
    worker busy with a long chunk keeps saying it holds it."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.trefs: list = []
        self.sweeper: Sweeper | None = None
        self.worker = worker
        self.beating = False

    def start(self, worker) -> None:
        app = worker.app
        if PREDICT_QUEUE not in app.amqp.queues.consume_from:
            return
        settings = app.anigenre_settings
        self.client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=10)
        self.key = holdings_key(worker.hostname, os.getpid())
        self.heartbeat_s = settings.worker_heartbeat_s
        self.sweeper = Sweeper(
            self.client,
            index_home(settings),
            lambda plan, chunks: send_chunks(app, plan, chunks),
            interval_s=settings.sweep_interval_s,
            max_resends=settings.sweep_max_resends,
            heartbeat_s=settings.worker_heartbeat_s,
            s3=settings.s3,
        )
        self.trefs = [
            worker.timer.call_repeatedly(settings.worker_heartbeat_s, self._beat),
            worker.timer.call_repeatedly(settings.sweep_interval_s, self._tick),
        ]
        log.info(
            "heartbeat every %g s, sweep every %g s",
            settings.worker_heartbeat_s,
            settings.sweep_interval_s,
        )

    def _beat(self) -> None:
        tags = held_tags(self.worker)
        if tags is None and not self.beating:
            return  # not consuming yet, so holding nothing
        self.beating = True
        try:
            publish_holdings(self.client, self.key, tags, self.heartbeat_s)
        except redis.RedisError as exc:  # the consumer logs the outage already
            log.warning("heartbeat skipped: %s", exc)

    def _tick(self) -> None:
        # A failed sweep must never take the worker down; the next one retries.
        try:
            self.sweeper.sweep(own_tags=held_tags(self.worker) or ())
        except redis.ConnectionError as exc:  # the consumer logs the outage already
            log.warning("sweep skipped: %s", exc)
        except Exception:
            log.exception("sweep failed")

    def stop(self, worker) -> None:
        # The holdings key is left to expire: deleting it while a warm shutdown still
        # finishes a chunk would offer that chunk to the sweep.
        for tref in self.trefs:
            tref.cancel()
        self.trefs = []
