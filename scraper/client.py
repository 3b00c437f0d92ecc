"""AniList GraphQL client: one session, explicit timeouts, paced, retried."""

from __future__ import annotations

import json

import requests
from anigenre.core.errors import GraphQLError, MalformedResponse
from anigenre.scraper.http import (
    RetryPolicy,
    Stats,
    Timeout,
    raise_for_status,
    retry_after_seconds,
    send,
    with_retries,
)
from anigenre.scraper.ratelimit import RateLimiter


class AniListClient:
    def __init__(
        self,
        endpoint: str,
        session: requests.Session,
        limiter: RateLimiter,
        *,
        timeout: Timeout = Timeout(),  # noqa: B008 - frozen value object
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008
        stats: Stats | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self.limiter = limiter
        self.timeout = timeout
        self.retry = retry
        self.stats = stats or Stats()

    def query(self, query: str, variables: dict) -> dict:
        """POST one GraphQL query and return its ``data``; retries what is retryable."""
        return with_retries(
            lambda: self._once(query, variables),
            self.retry,
            self.stats,
            on_rate_limited=self.limiter.pause,
        )

    def _once(self, query: str, variables: dict) -> dict:
        self.limiter.acquire()
        self.stats.bump("requests")
        resp = send(
            lambda: self.session.post(
                self.endpoint,
                json={"query": query, "variables": variables},
                headers={"Accept": "application/json"},
                timeout=self.timeout.as_requests(),
            ),
            self.endpoint,
        )
        self.limiter.observe(*_rate_headers(resp.headers))
        if resp.status_code == 400:
            raise GraphQLError(_error_text(resp), _errors(resp))
        raise_for_status(resp)
        try:
            body = resp.json()
        except (ValueError, json.JSONDecodeError):
            raise MalformedResponse(f"non-JSON body from {self.endpoint}") from None
        if not isinstance(body, dict):
            raise MalformedResponse("JSON body is not an object")
        if body.get("errors"):
            raise GraphQLError(_join(body["errors"]), body["errors"])
        if not isinstance(body.get("data"), dict):
            raise MalformedResponse("response has no 'data' object")
        return body["data"]


def _rate_headers(headers) -> tuple[int | None, int | None, float | None]:
    def as_int(name: str) -> int | None:
        try:
            return int(headers[name])
        except (KeyError, ValueError):
            return None

    has_reset = "Retry-After" in headers or "X-RateLimit-Reset" in headers
    reset_in = retry_after_seconds(headers) if has_reset else None
    return as_int("X-RateLimit-Limit"), as_int("X-RateLimit-Remaining"), reset_in


def _errors(resp: requests.Response) -> list:
    try:
        return resp.json().get("errors") or []
    except ValueError:
        return []


def _error_text(resp: requests.Response) -> str:
    errors = _errors(resp)
    return _join(errors) if errors else f"400 Bad Request from {resp.url}"


def _join(errors: list) -> str:
    return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
