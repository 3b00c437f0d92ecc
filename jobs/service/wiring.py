"""The dispatcher the settings call for: Celery's with a broker, else this process."""

from __future__ import annotations

from collections.abc import Callable

from anigenre.config import Settings
from anigenre.jobs.service.dispatch import Dispatcher, InProcess


def dispatcher_for(
    settings: Settings, on_chunk: Callable[[dict], None] | None = None
) -> Dispatcher:
    """Raises ConfigError/NetworkError (one line) when the broker is wrong or down."""
    if not settings.broker_url:
        return InProcess(settings, on_chunk)
    # Celery is imported only when a broker is configured: the in-process CLI starts faster.
    from anigenre.jobs.queue.dispatch import CeleryDispatcher

    return CeleryDispatcher(settings)


def queue_for(settings: Settings) -> Dispatcher:
    """A dispatcher that queues and returns at once: Celery's with a broker, else a
    thread of this process per run (jobs.service.background). For callers that answer
    before the run is done: ``anigenre.submit``, the HTTP API."""
    if settings.broker_url:
        return dispatcher_for(settings)
    from anigenre.jobs.service.background import Background

    return Background(settings)
