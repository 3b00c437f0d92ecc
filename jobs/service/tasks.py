"""Tasks submitted from this data dir (scrape, train, ...): their records and states.

The broker's result backend knows a task's state but not what it was, and answers
PENDING for any id at all; the record in ``<data>/tasks/<id>.json`` is how a mistyped id
is told from a queued task of ours, and how the task is named. Records are pushed to and
pulled from an ``s3://`` data dir here, so any machine's front end sees them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from anigenre.config import Settings
from anigenre.core import mirror
from anigenre.core.atomic import write_text_atomic
from anigenre.core.errors import AnigenreError, ConfigError
from anigenre.jobs.service.dispatch import FAILED_STATES, Dispatcher, TaskState
from anigenre.jobs.service.hints import command
from anigenre.jobs.stages.calls import CALLS

TASKS_DIR = "tasks"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a file name, never a path


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    name: str  # scrape, train, ...
    queue: str
    submitted: str  # ISO 8601, UTC


class TaskRecords:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._folder = Path(settings.data_dir) / TASKS_DIR

    def _path(self, task_id: str) -> Path | None:
        return self._folder / f"{task_id}.json" if _SAFE_ID.match(task_id) else None

    def add(self, task_id: str, name: str, queue: str, now: dt.datetime | None = None):
        path = self._path(task_id)
        if path is None:
            raise ValueError(f"unexpected task id {task_id!r}")
        record = TaskRecord(task_id, name, queue, (now or dt.datetime.now(dt.UTC)).isoformat())
        write_text_atomic(path, json.dumps(asdict(record)))
        mirror.push(self._settings, TASKS_DIR)
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        mirror.pull(self._settings, TASKS_DIR)
        return self._read(task_id)

    def all(self) -> list[TaskRecord]:
        """Every recorded task, oldest first."""
        mirror.pull(self._settings, TASKS_DIR)
        found = (self._read(p.stem) for p in sorted(self._folder.glob("*.json")))
        return sorted((r for r in found if r), key=lambda r: r.submitted)

    def _read(self, task_id: str) -> TaskRecord | None:
        path = self._path(task_id)
        try:
            return TaskRecord(**json.loads(path.read_text())) if path else None
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None


def submit_task(settings: Settings, dispatcher: Dispatcher, name: str, **kwargs) -> TaskRecord:
    """Send the stage call ``name`` and record it, so status, wait and list know it."""
    task_id = dispatcher.send(name, **kwargs)
    return TaskRecords(settings).add(task_id, name, CALLS[name][1])


def task_view(task_id: str, record: TaskRecord | None, state: TaskState) -> dict:
    """A task as JSON-ready data: what it is (from its record) and how it stands."""
    view = {
        "kind": "task",
        "id": task_id,
        "name": record.name if record else None,
        "queue": record.queue if record else None,
        "submitted": record.submitted if record else None,
        "state": state.state,
    }
    if isinstance(state.outcome, BaseException):
        view["error"] = error_line(state.outcome)
    elif state.state == "SUCCESS":
        view["result"] = state.outcome
    return view


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def task_status(settings: Settings, task_id: str, dispatcher: Dispatcher | None) -> dict:
    """A submitted task's view; an id that is neither one of our recorded tasks nor
    known to the broker is an error, not PENDING."""
    record = TaskRecords(settings).get(task_id)
    if dispatcher is None or not dispatcher.queued:
        if record:
            raise ConfigError(
                f"task {task_id} ({record.name}) keeps its state on the broker; pass --broker "
                "redis://HOST:6379/0 or set ANIGENRE_BROKER_URL"
            )
        raise ConfigError(
            f"no run '{task_id}' in {settings.data_dir} ('anigenre jobs list' shows them); "
            "a task id from 'jobs submit scrape|train' needs --broker"
        )
    state = dispatcher.state(task_id)
    if record is None and state.state == "PENDING":
        # A ConfigError (exit 2), as an unknown run id is everywhere: the id is what is wrong.
        raise ConfigError(
            f"no run or task '{task_id}' in {settings.data_dir} or on the broker "
            f"('{command(settings, 'jobs list')}' shows them)"
        )
    return task_view(task_id, record, state)


def wait_task(
    settings: Settings, task_id: str, dispatcher: Dispatcher, timeout: float, poll_s: float = 0.5
) -> dict:
    """Block until the task succeeds or fails; its last view. Raises AnigenreError when
    ``timeout`` passes first (the task stays queued)."""
    view = task_status(settings, task_id, dispatcher)
    record = TaskRecords(settings).get(task_id)  # fixed at submission: read once
    deadline = time.monotonic() + timeout
    while view["state"] not in ("SUCCESS", *FAILED_STATES):
        if time.monotonic() > deadline:
            hint = dispatcher.idle_hint(view["queue"]) if view["queue"] else None
            raise AnigenreError(
                f"task {task_id} not finished after {timeout:.0f} s ({view['state']}); "
                f"it stays queued: '{command(settings, f'jobs wait {task_id}')}' waits again"
                + (f"; {hint}" if hint else "")
            )
        time.sleep(poll_s)
        view = task_view(task_id, record, dispatcher.state(task_id))
    return view


def task_views(settings: Settings, dispatcher: Dispatcher | None) -> list[dict]:
    """Every recorded task's view, with its state when a broker answers."""
    asked = dispatcher is not None and dispatcher.queued
    return [
        task_view(r.task_id, r, dispatcher.state(r.task_id) if asked else TaskState(None))
        for r in TaskRecords(settings).all()
    ]
