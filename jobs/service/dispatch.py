"""Where queued work runs: in this process, or on the broker's workers.

A :class:`Dispatcher` is what the run and task services are handed; they never ask which
one it is. :class:`InProcess` runs each call here and now (the embedded default, no
broker); ``jobs.queue.dispatch.CeleryDispatcher`` publishes it for the workers. Both run
the same functions (jobs.stages.calls, jobs.stages.predict), so a job does the same
wherever it runs. :func:`jobs.service.wiring.dispatcher_for` picks one from the settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from anigenre.config import Settings
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.stages.calls import CALLS
from anigenre.jobs.stages.predict import predict_in_process

# Celery's words for a task's state; an id the result backend never saw is PENDING too.
SUCCESS, FAILURE, REVOKED = "SUCCESS", "FAILURE", "REVOKED"
FAILED_STATES = (FAILURE, REVOKED)


@dataclass(frozen=True)
class TaskState:
    state: str | None  # None: nobody who knows was asked (no broker)
    outcome: object = None  # the result (SUCCESS), or the exception (FAILURE, RETRY)


class Dispatcher(Protocol):
    queued: bool  # whether the work leaves this process

    def send_chunks(self, plan: RunPlan, indices: list[int] | None = None) -> int:
        """Run (or queue) these chunks of ``plan``, all when None; how many were sent."""

    def send(self, name: str, **kwargs) -> str:
        """Run (or queue) the stage call ``name`` (jobs.stages.calls); its task id."""

    def state(self, task_id: str) -> TaskState: ...

    def result(self, task_id: str, timeout: float | None = None) -> dict:
        """The call's JSON result, once it has one; its exception if it failed."""

    def idle_hint(self, queue: str) -> str | None:
        """A line saying how to start a worker when none consumes ``queue``, else None."""

    def forget_resends(self, run_id: str) -> None:
        """A resumed run gets a fresh allowance of the sweeper's re-queues."""


class InProcess:
    """Runs everything here, before the call returns: a chunk's progress goes to
    ``on_chunk``; a stage call that raises raises here, as the command would."""

    queued = False

    def __init__(self, settings: Settings, on_chunk: Callable[[dict], None] | None = None):
        self._settings = settings
        self._on_chunk = on_chunk
        self._results: dict[str, dict] = {}

    def send_chunks(self, plan: RunPlan, indices: list[int] | None = None) -> int:
        # Chunks already written are skipped, so "these" and "all" are the same here.
        predict_in_process(self._settings, plan, self._on_chunk)
        return len(plan.chunks) if indices is None else len(indices)

    def send(self, name: str, **kwargs) -> str:
        function, _queue = CALLS[name]
        task_id = f"{name}-{uuid.uuid4().hex[:12]}"
        self._results[task_id] = function(self._settings, **kwargs)
        return task_id

    def state(self, task_id: str) -> TaskState:
        if task_id in self._results:
            return TaskState(SUCCESS, self._results[task_id])
        return TaskState(None)

    def result(self, task_id: str, timeout: float | None = None) -> dict:
        return self._results[task_id]

    def idle_hint(self, queue: str) -> str | None:
        return None

    def forget_resends(self, run_id: str) -> None:
        return None
