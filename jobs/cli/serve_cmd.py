"""``anigenre serve``: the HTTP API (jobs/api) on uvicorn, 127.0.0.1:8000 by default."""

from __future__ import annotations

import argparse
import importlib.util

from anigenre.config import Settings
from anigenre.core.errors import ConfigError


def port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port; give a number 0-65535")
    return int(text)


def register(sub) -> None:
    p = sub.add_parser("serve", help="the HTTP API: predict posters and queue runs over HTTP")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; any but loopback needs ANIGENRE_API_TOKEN set",
    )
    p.add_argument("--port", type=port, default=8000, help="port to serve on (0: any free one)")
    p.add_argument("--model", default="latest", help="model id, unique prefix, alias, or 'latest'")
    p.add_argument("--broker", help="broker URL runs are queued on (env ANIGENRE_BROKER_URL)")
    p.set_defaults(run=run, settings_overrides=lambda a: {"broker_url": a.broker})


def run(args, settings: Settings) -> int:
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise ConfigError("the HTTP API needs FastAPI and uvicorn: pip install -e '.[api]'")
    from anigenre.jobs.api.server import serve

    serve(settings, args.host, args.port, args.model, say=lambda line: print(line, flush=True))
    return 0
