"""An app for the configured broker, checked to answer before any work is planned."""

from __future__ import annotations

from urllib.parse import urlsplit

from anigenre.config import Settings
from anigenre.core.errors import BrokerUnreachable, ConfigError
from anigenre.jobs.queue.app import create_app
from celery import Celery
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

BROKER_SCHEMES = ("redis", "rediss")


def broker_app(settings: Settings) -> Celery:
    """An app for ``settings.broker_url``, checked to answer before anything is planned."""
    if not settings.broker_url:
        raise ConfigError(
            "no broker configured; pass --broker redis://HOST:6379/0 or set ANIGENRE_BROKER_URL"
        )
    scheme = urlsplit(settings.broker_url).scheme
    if scheme not in BROKER_SCHEMES:
        # Redis is the only broker: the sweeper and re-queueing talk to it directly. The
        # URL is not echoed: one this malformed may carry a password the masking misses.
        given = f"scheme '{scheme}://'" if scheme else "no scheme"
        raise ConfigError(
            f"the broker URL has {given}; use redis://HOST:6379/0 or rediss://HOST:6380/0 (TLS)"
        )
    app = create_app(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except (OperationalError, OSError) as exc:
        # Masked: a broker URL may carry a password, and this line lands in terminals and logs.
        where = maybe_sanitize_url(settings.broker_url)
        raise BrokerUnreachable(f"cannot reach the broker at {where} ({exc})") from None
    return app
