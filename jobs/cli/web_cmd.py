"""``anigenre web``: the poster page and run browser, served by Streamlit on 127.0.0.1.

The command resolves the settings like any other, checks what it can before the server
starts (Streamlit installed, the port free, the model known), then replaces itself with
``python -m streamlit run jobs/web/app.py``. The settings travel as the ANIGENRE_*
variables every anigenre process reads, so the page sees what this command line saw.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from pathlib import Path

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.jobs.web import APP_SCRIPT

# Posters are a few MB; Streamlit refuses larger files in the browser, with a line that
# says the limit, before a byte is sent (every upload used to be held in memory).
MAX_UPLOAD_MB = 10


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port; give a number 1-65535")
    return int(text)


def register(sub) -> None:
    p = sub.add_parser("web", help="the poster page and run browser, in your browser")
    p.add_argument("--port", type=port, default=8501, help="port to serve on (default 8501)")
    p.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; the page has no login, so bind another "
        "only on a network you trust)",
    )
    p.add_argument("--model", default="latest", help="model id, unique prefix, or 'latest'")
    p.add_argument("--broker", help="broker URL for the Queue page (env ANIGENRE_BROKER_URL)")
    p.set_defaults(run=run, settings_overrides=lambda a: {"broker_url": a.broker})


def streamlit_argv(address: str, port: int, model: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_SCRIPT),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        # Nothing leaves this machine, and the sources are not watched for edits.
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        # Streamlit collects garbage after every script run; with TensorFlow loaded the
        # heap is large and a full collection holds the GIL for ~0.3 s, during which the
        # finished run's results wait to be sent. Python's own collector still runs.
        "--runner.postScriptGC",
        "false",
        # A bug shows its type on the page; the traceback goes to this terminal only.
        "--client.showErrorDetails",
        "type",
        "--client.toolbarMode",
        "minimal",
        "--",
        "--model",
        model,
    ]


def server_env(settings: Settings, config: str | None, base: dict[str, str]) -> dict[str, str]:
    """The environment the page reads its settings from: this command's, plus what its
    flags decided (absolute paths: the server may resolve them from another folder)."""
    env = dict(base)
    # An s3:// data dir is passed as its URI, so the page syncs its mirror as commands do.
    env["ANIGENRE_DATA_DIR"] = settings.data_uri or str(Path(settings.data_dir).resolve())
    if config:
        env["ANIGENRE_CONFIG"] = str(Path(config).resolve())
    if settings.broker_url:
        env["ANIGENRE_BROKER_URL"] = settings.broker_url
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # glibc: every block of 1 MB or more (an upload, a decoded poster) gets pages of its
    # own, given back when freed. Its default threshold rises to the largest block freed
    # (up to 32 MB), so each large upload's pages stayed in the server.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(2**20))
    return env


def _check_port(address: str, number: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        # As the server will: a port left in TIME_WAIT by a stopped server is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, number))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve on {address}:{number} ({exc.strerror or exc}); "
                "pass another --port, or stop what is using it"
            ) from None


def run(args, settings: Settings) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the web page needs Streamlit: pip install -e '.[web]'")
    model = args.model
    if model != "latest":
        from anigenre.models.synced import Registry

        model = Registry(settings).resolve(model)  # a typo fails here, not later
    _check_port(args.address, args.port)
    env = server_env(settings, getattr(args, "config", None), dict(os.environ))
    print(
        f"anigenre web: http://{args.address}:{args.port} (model {model}, data "
        f"{env['ANIGENRE_DATA_DIR']}); Ctrl-C stops it",
        flush=True,
    )
    argv = streamlit_argv(args.address, args.port, model)
    os.execve(argv[0], argv, env)  # noqa: S606 - argv is ours, no shell involved
    return 0  # not reached
