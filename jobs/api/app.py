"""The FastAPI app: health, models, metrics, and the routers of predict.py and runs.py.

``create_app(settings, model)`` takes a loaded ``PosterModel`` (one per process, loaded
by jobs.api.server before the socket opens) and the settings every route reads. Errors
anigenre raises on purpose become JSON ``{"detail": LINE}`` with a status by their
branch of core/errors.py; anything else is a 500 whose traceback goes to the log only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from importlib.metadata import PackageNotFoundError, version

from anigenre.config import Settings
from anigenre.core.errors import (
    AnigenreError,
    ConfigError,
    DataError,
    RetryableError,
)
from anigenre.jobs.api import predict, runs
from anigenre.jobs.api.guard import BearerToken, BodyLimit, TimeLimit
from anigenre.jobs.api.metrics import RUNS_COUNTED, Measured, Metrics
from anigenre.jobs.service import runs as run_service
from anigenre.jobs.service import views
from anigenre.jobs.service.background import Background
from anigenre.jobs.service.dispatch import Dispatcher
from anigenre.jobs.service.wiring import queue_for
from anigenre.models.poster_model import PosterModel
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("anigenre.api")

# By branch: a name or setting to fix; a run or model in a state that does not allow it;
# a broker or bucket that may answer later.
_STATUS = ((ConfigError, 400), (DataError, 409), (RetryableError, 503))


def create_app(settings: Settings, model: PosterModel) -> FastAPI:
    token = settings.api_token.get_secret_value() if settings.api_token else None
    app = FastAPI(
        title="anigenre",
        version=_version(),
        summary="Genres of anime posters, one poster or a whole folder at a time.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.model = model
    app.state.queue = _Queue(settings)
    app.state.metrics = Metrics(lambda: _run_states(settings))
    app.include_router(predict.router)
    app.include_router(runs.router)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict:  # on the event loop: it answers while the threads are busy
        """Up, and which model it predicts with; the one route that needs no token."""
        return {"status": "ok", "model": model.model_id}

    @app.get("/v1/models", tags=["service"], dependencies=predict.AUTH)
    def models() -> dict:
        """Every model of the data dir with its aliases, ``latest``, and the one served."""
        return {**views.models_view(settings), "served": model.model_id}

    @app.get("/metrics", tags=["service"], dependencies=predict.AUTH)
    def metrics() -> Response:
        return Response(app.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(AnigenreError)
    def anigenre_error(request: Request, exc: AnigenreError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        log.warning("%s %s: %d %s", request.method, request.url.path, status, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # Outermost last: the time limit and the token check are counted in the metrics.
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)  # after the token
    app.add_middleware(BearerToken, token=token)
    app.add_middleware(TimeLimit, seconds=settings.api_request_timeout_s)
    app.add_middleware(Measured, metrics=app.state.metrics)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    # Stopping: runs still waiting for a turn give up (interrupted, resumable) rather
    # than hold the process open; running ones finish (their threads are not daemons).
    app.state.queue.close()


def _version() -> str:
    try:
        return version("anigenre")
    except PackageNotFoundError:  # a checkout run in place, never pip-installed
        return "0+unknown"


def _run_states(settings: Settings) -> list[str | None]:
    entries = run_service.runs(settings, limit=RUNS_COUNTED)
    return [e.status.state if e.status else None for e in entries]


class _Queue:
    """Where ``POST /v1/runs`` sends a run: the broker's dispatcher, made on first use (a
    broker that is down makes those requests 503, not the server fail to start), or a
    background thread of this process without a broker."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._dispatcher: Dispatcher | None = None

    def __call__(self) -> Dispatcher:
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = queue_for(self._settings)
            return self._dispatcher

    def waiting_for(self, run_id: str) -> int | None:
        """How many runs at a time this process predicts, if ``run_id`` waits its turn
        here (no broker); else None."""
        here = self._dispatcher
        if isinstance(here, Background) and here.waiting(run_id):
            return here.at_once
        return None

    def close(self) -> None:
        if isinstance(self._dispatcher, Background):
            self._dispatcher.close()

    def unfinished(self) -> list[str]:
        """The runs this process still predicts (no broker)."""
        here = self._dispatcher
        if not isinstance(here, Background):
            return []
        return [run_id for run_id, thread in here.threads.items() if thread.is_alive()]

    def join(self) -> None:
        if isinstance(self._dispatcher, Background):
            self._dispatcher.join()
