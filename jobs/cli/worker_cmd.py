"""``anigenre worker`` and ``anigenre beat``: Celery processes with this CLI's settings.

They build the app from the settings this command line resolved (``--config``,
``--data-dir``, ``--broker``), which ``celery -A jobs.queue.worker`` cannot see.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from anigenre.config import Settings
from anigenre.core.errors import ConfigError
from anigenre.jobs.cli import args as types

QUEUE_NAMES = ("scrape", "train", "predict")


def queue_list(text: str) -> str:
    names = [q.strip() for q in text.split(",") if q.strip()]
    bad = [q for q in names if q not in QUEUE_NAMES]
    if bad or not names:
        import argparse

        raise argparse.ArgumentTypeError(
            f"unknown queue {', '.join(bad) or repr(text)}; choose from {','.join(QUEUE_NAMES)}"
        )
    return ",".join(names)


def register(sub) -> None:
    w = sub.add_parser("worker", help="start a Celery worker for the given queues")
    w.add_argument("-Q", "--queues", type=queue_list, default="predict", help="e.g. scrape,train")
    w.add_argument("-c", "--concurrency", type=types.positive_int, default=1, help="processes")
    w.add_argument("-n", "--hostname", help="worker name (default: anigenre-<queues>@%%h)")
    w.add_argument("--loglevel", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    w.add_argument("--broker", help="broker URL (env ANIGENRE_BROKER_URL)")
    w.set_defaults(run=run_worker, settings_overrides=_broker)
    b = sub.add_parser("beat", help="start Celery beat: the scheduled incremental scrape and inbox")
    b.add_argument("--loglevel", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    b.add_argument("--broker", help="broker URL (env ANIGENRE_BROKER_URL)")
    # A local file even when the data dir is a bucket: beat rewrites it on every tick.
    b.add_argument("--schedule", help="beat's state file (default: <data dir>/celerybeat-schedule)")
    b.set_defaults(run=run_beat, settings_overrides=_broker)


def _broker(args) -> dict:
    return {"broker_url": args.broker}


def _app(settings: Settings):
    from anigenre.jobs.queue.broker import broker_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return broker_app(settings)  # one line, not a retry loop, when Redis is not there


def run_worker(args, settings: Settings) -> int:
    from anigenre.jobs.queue.app import start_worker

    name = args.hostname or f"anigenre-{args.queues.replace(',', '-')}@%h"
    return start_worker(
        _app(settings),
        args.queues,
        name,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        no_color=bool(os.environ.get("NO_COLOR")),  # as Celery's own command line reads it
    )


def run_beat(args, settings: Settings) -> int:
    if args.schedule:
        check_schedule(Path(args.schedule))  # before Celery, which prints a traceback a try
    app = _app(settings)
    schedule = ["--schedule", args.schedule] if args.schedule else []
    app.start(["beat", "--loglevel", args.loglevel, *schedule])
    return 0


def check_schedule(path: Path) -> None:
    """Beat keeps its state in ``path`` (and ``path``.dat, .dir, .bak beside it): a
    schedule it cannot write is one line here, not six tracebacks before it gives up."""
    folder = path.parent
    if path.is_dir():
        raise ConfigError(
            f"--schedule {path} is a folder; give a file name in it, e.g. "
            f"{path / 'celerybeat-schedule'}"
        )
    if not folder.is_dir():
        raise ConfigError(
            f"--schedule {path}: the folder {folder} does not exist; create it "
            f"(mkdir -p {shlex.quote(str(folder))}) or give a file in an existing folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--schedule {path}: the folder {folder} is not writable for this user; "
            "beat rewrites the file on every tick, so give a file in a writable folder"
        )
