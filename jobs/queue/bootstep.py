"""The worker bootstep that runs the lost-chunk sweep (jobs.queue.sweeper) on a timer."""

from __future__ import annotations

import logging

import redis
from celery import bootsteps

from jobs.queue.publish import send_chunks
from jobs.queue.sweeper import PREDICT_QUEUE, Sweeper

log = logging.getLogger(__name__)


class SweeperStep(bootsteps.StartStopStep):
    """Runs the sweep on the worker's timer, in workers that consume the predict queue."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.tref = None
        self.sweeper: Sweeper | None = None

    def start(self, worker) -> None:
        app = worker.app
        if PREDICT_QUEUE not in app.amqp.queues.consume_from:
            return
        settings = app.anigenre_settings
        self.sweeper = Sweeper(
            redis.Redis.from_url(app.conf.broker_url, socket_timeout=10),
            settings.data_dir,
            lambda plan, chunks: send_chunks(app, plan, chunks),
            interval_s=settings.sweep_interval_s,
            max_resends=settings.sweep_max_resends,
        )
        self.tref = worker.timer.call_repeatedly(settings.sweep_interval_s, self._tick)
        log.info("lost-chunk sweep every %g s", settings.sweep_interval_s)

    def _tick(self) -> None:
        # A failed sweep must never take the worker down; the next one retries.
        try:
            self.sweeper.sweep()
        except redis.ConnectionError as exc:  # the consumer logs the outage already
            log.warning("sweep skipped: %s", exc)
        except Exception:
            log.exception("sweep failed")

    def stop(self, worker) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
