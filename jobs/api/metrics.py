"""``GET /metrics``: Prometheus text, from prometheus_client, on a registry of the app's
own (two apps in one process, as in tests, never share counts).

- ``anigenre_http_requests_total{method,route,status}`` and
  ``anigenre_http_request_duration_seconds{route}``: the route is its template
  (``/v1/runs/{run_id}``), so ids do not make a series each; no route: ``unmatched``.
- ``anigenre_predictions_total{status}``: posters predicted by ``/v1/predict``.
- ``anigenre_runs_submitted_total`` and ``anigenre_runs{state}``: runs queued here, and
  the newest :data:`RUNS_COUNTED` runs of the data dir by state, read at each scrape.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable

from anigenre.jobs.runs.status import COMPLETE, FAILED, INTERRUPTED, QUEUED, RUNNING, STALLED
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RUNS_COUNTED = 200
STATES = (QUEUED, RUNNING, STALLED, INTERRUPTED, COMPLETE, FAILED)


class Metrics:
    def __init__(self, run_states: Callable[[], Iterable[str | None]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "anigenre_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "anigenre_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.predictions = Counter(
            "anigenre_predictions", "Posters predicted by /v1/predict", ["status"],
            registry=self.registry,
        )  # fmt: skip
        self.submitted = Counter(
            "anigenre_runs_submitted", "Runs queued through /v1/runs", registry=self.registry
        )
        self.registry.register(_RunStates(run_states))

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _RunStates(Collector):
    def __init__(self, states: Callable[[], Iterable[str | None]]) -> None:
        self._states = states

    def collect(self):
        tally = Tally(s or "unreadable" for s in self._states())
        family = GaugeMetricFamily(
            "anigenre_runs", f"The newest {RUNS_COUNTED} runs, by state", labels=["state"]
        )
        for state in (*STATES, "unreadable"):
            family.add_metric([state], tally.get(state, 0))
        yield family


class Measured:
    """ASGI middleware counting every answer, 401s and 413s included."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
