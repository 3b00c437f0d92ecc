"""Starting the HTTP API: refuse an open bind without a token, load the model once, open
the socket, and hand both to uvicorn.

The socket is bound here, not by uvicorn, so ``--port 0`` gets a free port and the line
printed says which, and a port in use is one ConfigError line before any model loads."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Callable

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.jobs.stages.predict import load_predictor
from anigenre.models.poster_model import PosterModel

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def check_bind(host: str, settings: Settings) -> None:
    """Without a token the API serves anyone who reaches it: loopback only."""
    if settings.api_token is not None or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to serve on {host} without a token: anyone who can reach it could "
        "predict and queue runs; set ANIGENRE_API_TOKEN (or api_token in the config file), "
        "or serve on 127.0.0.1"
    )


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def open_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn would: a port left in TIME_WAIT by a stopped server is free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve on {host}:{port} ({exc.strerror or exc}); "
            "pass another --port, or stop what is using it"
        ) from None
    sock.set_inheritable(True)
    return sock


def load_model(settings: Settings, model: str) -> PosterModel:
    """The model ``model`` names, on the ``predict_engine`` setting's engine (as the CLI's
    ``predict``), warmed so the first request does not pay for its set-up."""
    loaded = PosterModel(load_predictor(settings, model)).one_at_a_time()
    loaded.warm()
    return loaded


def serve(
    settings: Settings,
    host: str,
    port: int,
    model: str,
    say: Callable[[str], None] = print,
) -> None:
    """Serve until SIGINT/SIGTERM. In-process runs still going then are waited for (their
    threads are not daemons; the ones still waiting for a turn give up); a second signal,
    or a kill, leaves them interrupted, and ``jobs resume`` ends them."""
    import uvicorn
    from anigenre.jobs.api.app import create_app

    check_bind(host, settings)
    sock = open_socket(host, port)
    try:
        loaded = load_model(settings, model)
        app = create_app(settings, loaded)
        bound = sock.getsockname()
        where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        auth = "bearer token required" if settings.api_token else "no token: loopback only"
        say(
            f"anigenre serve: http://{where}:{bound[1]} (model {loaded.model_id}, "
            f"{loaded.engine}; {auth}); docs at /docs; Ctrl-C stops it"
        )
        config = uvicorn.Config(
            app,
            log_level="info",
            # The access log names method, path and status: never a header, so never the token.
            access_log=True,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=10,
            server_header=False,
        )
        logging.getLogger("anigenre").setLevel(logging.INFO)
        with _second_term_stops():
            uvicorn.Server(config).run(sockets=[sock])
            _finish_runs(app.state.queue, say)
    finally:
        sock.close()


def _finish_runs(queue, say: Callable[[str], None]) -> None:
    """Wait for the runs this server predicts (no broker) before the process ends."""
    left = queue.unfinished()
    if left:
        say(
            f"anigenre serve: finishing {len(left)} run(s) predicted here ({', '.join(left)}); "
            "a second SIGTERM or Ctrl-C stops them: they read interrupted, and "
            "'anigenre jobs resume RUN_ID' finishes them"
        )
        queue.join()


@contextlib.contextmanager
def _second_term_stops():
    """uvicorn stops on SIGTERM and raises it again once stopped, which with the default
    handler ends the process mid-run. The first is let through (uvicorn has already
    stopped serving), so :func:`_finish_runs` can wait; a second ends the process."""
    stopping = []

    def on_term(sig, frame) -> None:
        if stopping:
            os._exit(128 + sig)  # leases of a gone pid read interrupted
        stopping.append(sig)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
