"""A run queued without a broker: its chunks run here, in a thread of this process.

``anigenre.submit`` and the HTTP API's ``POST /v1/runs`` return as soon as a run is
planned; with no broker configured, :class:`Background` is what then predicts it. Each
run gets a thread of its own that does what ``anigenre predict`` does in the foreground
(``jobs.stages.predict.predict_in_process``: the run's lock, its lease, the chunks, the
manifest), so ``jobs status`` reads it as any in-process run: ``running``, ``complete``,
or ``interrupted`` once this process stops (``jobs resume RUN_ID`` finishes it).

Handing a run over. The planner holds the run for this process until ``submit`` lets go
of it, just after :meth:`Background.send_chunks` returns; the hold is a flock on a local
output dir, and this process has one per run. So the thread takes the run only once it is
let go, with the output dir's planning lock held from before the planner's lock drops
until the thread's own is taken: no other planner can find the run unheld in between and
predict its files a second time.
"""

from __future__ import annotations

import fcntl
import logging
import threading

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError, ConfigError
from anigenre.jobs.runs import live
from anigenre.jobs.runs.layout import RUN_LOCK
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.service.dispatch import InProcess, TaskState
from anigenre.jobs.stages.predict import planning_lock, predict_in_process

log = logging.getLogger("anigenre.background")


class Background:
    """A :class:`jobs.service.dispatch.Dispatcher` that runs each run's chunks in a
    thread of its own and returns at once. Stage calls (``send``) run here and now, as
    :class:`InProcess` runs them. The threads are not daemons: a script that submitted a
    run and ends waits for it, as ``predict`` would have."""

    queued = False  # the work stays in this process

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._here = InProcess(settings)
        self.threads: dict[str, threading.Thread] = {}
        self.errors: dict[str, str] = {}  # run id -> why its thread stopped

    def send_chunks(self, plan: RunPlan, indices: list[int] | None = None) -> int:
        # Chunks already written are skipped when the run is taken, so "these" is "all".
        handed = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(plan, handed), name=f"run-{plan.run_id}", daemon=False
        )
        self.threads[plan.run_id] = thread
        thread.start()
        handed.wait()  # the thread is waiting on the planner's lock, or has the run
        return len(plan.chunks) if indices is None else len(indices)

    def _run(self, plan: RunPlan, handed: threading.Event) -> None:
        try:
            _take_over(self._settings, plan, handed)
            predict_in_process(self._settings, plan)
        except (AnigenreError, OSError) as exc:
            # The lease is left marked stopped (jobs.runs.lease), so the run reads
            # interrupted with its resume command; this line says why.
            self.errors[plan.run_id] = str(exc)
            log.error("run %s stopped: %s", plan.run_id, exc)
        except BaseException as exc:
            self.errors[plan.run_id] = f"{type(exc).__name__}: {exc}"
            log.exception("run %s stopped", plan.run_id)
        finally:
            handed.set()

    def send(self, name: str, **kwargs) -> str:
        return self._here.send(name, **kwargs)

    def state(self, task_id: str) -> TaskState:
        return self._here.state(task_id)

    def result(self, task_id: str, timeout: float | None = None) -> dict:
        return self._here.result(task_id, timeout)

    def idle_hint(self, queue: str) -> str | None:
        return None

    def forget_resends(self, run_id: str) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        """Wait for every run this dispatcher started (tests, a clean shutdown)."""
        for thread in list(self.threads.values()):
            thread.join(timeout)


def _take_over(settings: Settings, plan: RunPlan, handed: threading.Event) -> None:
    """Hold ``plan``'s run in this thread once its planner (this process, another thread)
    lets go of it; ``handed`` is set once this thread is waiting for that."""
    if not plan.out.is_local:
        # A bucket's run is held by its lease, which is this process's either way: the
        # planner's hold and the run's are the same, and letting go of it leaves the lease.
        handed.set()
        return
    with live.planning(plan.out, planning_lock(settings, plan.out)):
        with open(plan.files.local_path(RUN_LOCK), "a") as fh:
            handed.set()
            fcntl.flock(fh, fcntl.LOCK_EX)  # returns once the planner's lock is dropped
        # Closed, the flock is free again, and no planner can look while we hold planning.
        if not live.hold(plan.files):
            raise ConfigError(f"run {plan.run_id} was taken by another process")
