"""Starting the HTTP API: refuse an open bind without a token, load the model once, open
the socket, and hand both to uvicorn.

The socket is bound here, not by uvicorn, so ``--port 0`` gets a free port and the line
printed says which, and a port in use is one ConfigError line before any model loads."""

from __future__ import annotations

import ipaddress
import logging
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
    threads are not daemons); killed, they read interrupted and ``jobs resume`` ends them."""
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
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
