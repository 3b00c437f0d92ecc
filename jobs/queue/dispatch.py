"""The broker's dispatcher: the same calls as jobs.service.dispatch.InProcess, published
for the workers. The one place outside the workers that asks Celery about tasks."""

from __future__ import annotations

from anigenre.config import Settings
from anigenre.core.urls import masked_url
from anigenre.jobs.queue.broker import broker_app
from anigenre.jobs.queue.publish import forget_resends, send_chunks, send_task
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.service.dispatch import TaskState
from anigenre.jobs.service.hints import command
from anigenre.jobs.stages.calls import CALLS, task_name

_FINISHED = ("SUCCESS", "FAILURE", "RETRY", "REVOKED")


class CeleryDispatcher:
    queued = True

    def __init__(self, settings: Settings):
        self._settings = settings
        self.app = broker_app(settings)  # checked to answer before anything is planned

    def send_chunks(self, plan: RunPlan, indices: list[int] | None = None) -> int:
        sent = send_chunks(self.app, plan, indices)
        return 0 if sent is None else len(sent.results)

    def send(self, name: str, **kwargs) -> str:
        _function, queue = CALLS[name]
        return send_task(self.app, task_name(name), queue, **kwargs)

    def state(self, task_id: str) -> TaskState:
        result = self.app.AsyncResult(task_id)
        state = result.state
        return TaskState(state, result.result if state in _FINISHED else None)

    def result(self, task_id: str, timeout: float | None = None) -> dict:
        return self.app.AsyncResult(task_id).get(timeout=timeout)

    def idle_hint(self, queue: str) -> str | None:
        try:
            replies = self.app.control.inspect(timeout=1.0).active_queues() or {}
        except Exception:  # a hint is never worth failing the command
            return None
        if any(q.get("name") == queue for queues in replies.values() for q in queues or ()):
            return None
        broker = masked_url(self._settings.broker_url)
        return f"no worker is consuming '{queue}'; start one with: " + command(
            self._settings, f"worker -Q {queue} --broker {broker}"
        )

    def forget_resends(self, run_id: str) -> None:
        forget_resends(self.app, run_id)
