"""Tasks submitted from this data dir (``jobs submit scrape|train``): ``<data>/tasks/<id>.json``.

The broker's result backend knows a task's state but not what it was, and answers
PENDING for any id at all; this record is how ``jobs status|wait|list`` tell a queued
task of ours from a mistyped id, and name it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from anigenre.core.atomic import write_text_atomic

TASKS_DIR = Path("tasks")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a file name, never a path


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    name: str  # scrape, train, ...
    queue: str
    submitted: str  # ISO 8601, UTC


def _path(data_dir: Path, task_id: str) -> Path | None:
    if not _SAFE_ID.match(task_id):
        return None
    return Path(data_dir) / TASKS_DIR / f"{task_id}.json"


def record_task(
    data_dir: Path, task_id: str, name: str, queue: str, now: dt.datetime | None = None
) -> TaskRecord:
    record = TaskRecord(task_id, name, queue, (now or dt.datetime.now(dt.UTC)).isoformat())
    path = _path(data_dir, task_id)
    if path is None:
        raise ValueError(f"unexpected task id {task_id!r}")
    write_text_atomic(path, json.dumps(asdict(record)))
    return record


def load_task(data_dir: Path, task_id: str) -> TaskRecord | None:
    path = _path(data_dir, task_id)
    try:
        return TaskRecord(**json.loads(path.read_text())) if path else None
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def list_tasks(data_dir: Path) -> list[TaskRecord]:
    """Every recorded task, oldest first."""
    folder = Path(data_dir) / TASKS_DIR
    found = (load_task(data_dir, p.stem) for p in sorted(folder.glob("*.json")))
    return sorted((r for r in found if r), key=lambda r: r.submitted)
