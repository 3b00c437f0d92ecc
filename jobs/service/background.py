"""A run queued without a broker: its chunks run here, in a thread of this process.

``anigenre.submit`` and the HTTP API's ``POST /v1/runs`` return as soon as a run is
planned; with no broker configured, :class:`Background` is what then predicts it. Each
run gets a thread of its own that does what ``anigenre predict`` does in the foreground
(``jobs.stages.predict.predict_in_process``: the run's lock, its lease, the chunks, the
manifest), so ``jobs status`` reads it as any in-process run: ``running``, ``complete``,
or ``interrupted`` once this process stops (``jobs resume RUN_ID`` finishes it).

At most :data:`RUNS_AT_ONCE` runs of this process predict at a time: each loads its own
predictor and takes the CPUs it finds, so a caller queueing fifty runs must not get fifty
of both. A run beyond that waits in its thread, holding its lock and its lease (another
process neither takes it nor reads it as interrupted), until a run ahead of it ends;
:meth:`waiting` says which, so a front end can call them queued. :meth:`close` (a server
stopping) makes those give up at once, marked stopped: they read interrupted, and
``jobs resume`` runs them.

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
from contextlib import ExitStack

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError, ConfigError
from anigenre.jobs.runs import live
from anigenre.jobs.runs.layout import RUN_LOCK
from anigenre.jobs.runs.lease import hold_lease
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.service.dispatch import InProcess, TaskState
from anigenre.jobs.stages.predict import planning_lock, predict_in_process

log = logging.getLogger("anigenre.background")

RUNS_AT_ONCE = 2


class Background:
    """A :class:`jobs.service.dispatch.Dispatcher` that runs each run's chunks in a
    thread of its own and returns at once. Stage calls (``send``) run here and now, as
    :class:`InProcess` runs them. The threads are not daemons: a script that submitted a
    run and ends waits for it, as ``predict`` would have."""

    queued = False  # the work stays in this process

    def __init__(self, settings: Settings, at_once: int = RUNS_AT_ONCE) -> None:
        self._settings = settings
        self._here = InProcess(settings)
        self.at_once = at_once
        self._slots = _turns(at_once)
        self._waiting: set[str] = set()
        self._closing = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.errors: dict[str, str] = {}  # run id -> why its thread stopped

    def send_chunks(self, plan: RunPlan, indices: list[int] | None = None) -> int:
        # Chunks already written are skipped when the run is taken, so "these" is "all".
        handed = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(plan, handed), name=f"run-{plan.run_id}", daemon=False
        )
        self.threads[plan.run_id] = thread
        self._waiting.add(plan.run_id)  # until its thread has a turn, from the start
        thread.start()
        handed.wait()  # the thread is waiting on the planner's lock, or has the run
        return len(plan.chunks) if indices is None else len(indices)

    def waiting(self, run_id: str) -> bool:
        """Whether ``run_id`` is this dispatcher's and not yet predicting: it waits for a
        run ahead of it to end (or, for an instant, is taking its turn)."""
        return run_id in self._waiting

    def close(self) -> None:
        """Runs still waiting give up (interrupted, resumable); running ones go on."""
        self._closing.set()

    def _run(self, plan: RunPlan, handed: threading.Event) -> None:
        try:
            _take_over(self._settings, plan, handed)
            with ExitStack() as held:
                held.callback(live.release, plan.files)  # last: a run given up is let go
                if not self._slots.acquire(blocking=False):
                    # predict_in_process renews the same lease once it starts.
                    held.enter_context(hold_lease(plan.files))
                    self._wait_for_slot(plan.run_id)
                held.callback(self._slots.release)
                self._waiting.discard(plan.run_id)
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
            self._waiting.discard(plan.run_id)
            handed.set()

    def _wait_for_slot(self, run_id: str) -> None:
        while not self._slots.acquire(timeout=0.5):
            if self._closing.is_set():
                raise ConfigError(f"run {run_id} was still waiting when this process stopped")

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


_TURNS: dict[int, threading.BoundedSemaphore] = {}
_TURNS_LOCK = threading.Lock()


def _turns(at_once: int) -> threading.BoundedSemaphore:
    """The process's turns: every Background shares them (``anigenre.submit`` makes one
    per call), so a script's fifty submits predict as few at a time as a server's."""
    with _TURNS_LOCK:
        return _TURNS.setdefault(at_once, threading.BoundedSemaphore(at_once))


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
