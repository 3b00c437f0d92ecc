"""Finds prediction chunks whose broker message was lost, and queues them again.

Kombu's Redis transport pops a message (BRPOP) and only afterwards records it as
unacknowledged. A worker killed in between loses that message for good: no visibility
timeout brings it back (kombu#305, celery#7950). A killed Redis can drop messages the
same way. The run's parts on disk are the truth, so every predict worker runs this sweep
on a timer; a Redis lock lets one of them act per interval.

A chunk is lost when, with the predict queue drained, it has no part and no
unacknowledged message names it, on two sweeps in a row: one sweep alone could catch a
message in the instant between its pop and its unacked record. Redoing a chunk rewrites
the same part, so a wrong guess costs time, never a duplicate row. A chunk re-queued
``max_resends`` times without a part (its task keeps failing) marks the run failed.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kombu.transport.redis import Channel

from core.errors import ConfigError, DataError
from jobs.runs.index import indexed_run_dir, list_runs, load_plan
from jobs.runs.markers import finalize, mark_failed
from jobs.runs.parts import missing_chunks
from jobs.runs.plan import FAILED, MANIFEST, QUEUED, RunPlan

log = logging.getLogger(__name__)

PREDICT_QUEUE = "predict"
PREDICT_TASK = "jobs.tasks.predict_chunk"
LOCK_KEY = "anigenre:sweeper:lock"
SUSPECTS_KEY = "anigenre:sweeper:suspects"
RESENT_PREFIX = "anigenre:sweeper:resent:"

Chunk = tuple[str, int]  # (run_id, chunk index)


def chunk_of_message(raw: dict) -> Chunk | None:
    """The (run_id, index) a kombu message carries, or None for any other task."""
    if raw.get("headers", {}).get("task") != PREDICT_TASK:
        return None
    body = raw["body"]
    if raw.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args = json.loads(body)[0]  # protocol 2 body: [args, kwargs, embed]
    return str(args[0]), int(args[1])


def in_flight(unacked_values: Iterable[bytes]) -> set[Chunk]:
    """Chunks held by some worker: kombu keeps ``[message, exchange, routing_key]``."""
    held = set()
    for value in unacked_values:
        chunk = chunk_of_message(json.loads(value)[0])
        if chunk is not None:
            held.add(chunk)
    return held


def confirm(suspects: set[Chunk], candidates: set[Chunk]) -> tuple[set[Chunk], set[Chunk]]:
    """Split this sweep's candidates into (lost now, suspects for the next sweep)."""
    lost = candidates & suspects
    return lost, candidates - lost


@dataclass(frozen=True)
class SweepResult:
    requeued: dict[str, list[int]]
    failed: dict[str, list[int]]
    finalized: list[str]


def watched_runs(data_dir) -> Iterable[RunPlan]:
    """Queued runs that are neither complete nor failed. Only their plans are read: a
    finished run's plan can list a hundred thousand files."""
    for run_id in list_runs(data_dir):
        try:
            folder = indexed_run_dir(data_dir, run_id)
            if (folder / QUEUED).exists() and not (
                (folder / MANIFEST).exists() or (folder / FAILED).exists()
            ):
                yield load_plan(data_dir, run_id)
        except (OSError, ValueError, ConfigError, DataError):
            continue  # a run whose files were removed by their owner is not ours to mend


class Sweeper:
    """One sweep per call. Redis and the re-queue function are passed in."""

    def __init__(
        self,
        client,
        data_dir,
        requeue: Callable[[RunPlan, list[int]], object],
        *,
        interval_s: float,
        max_resends: int,
        unacked_key: str = Channel.unacked_key,
    ) -> None:
        self.client, self.data_dir, self.requeue = client, data_dir, requeue
        self.interval_s, self.max_resends, self.unacked_key = interval_s, max_resends, unacked_key

    def queue_depth(self) -> int:
        names = [PREDICT_QUEUE] + [
            f"{PREDICT_QUEUE}{Channel.sep}{p}" for p in Channel.priority_steps if p
        ]
        return sum(self.client.llen(n) for n in names)

    def sweep(self) -> SweepResult | None:
        """None when another worker holds this interval's lock."""
        if not self.client.set(LOCK_KEY, "1", nx=True, ex=max(1, int(self.interval_s * 0.8))):
            return None
        result = SweepResult({}, {}, [])
        if self.queue_depth():
            # Workers are busy; a lost chunk waits until the backlog drains.
            self.client.delete(SUSPECTS_KEY)
            return result
        held = in_flight(self.client.hvals(self.unacked_key))
        plans, candidates = {}, set()
        for plan in watched_runs(self.data_dir):
            missing = missing_chunks(plan)
            if not missing:
                finalize(plan)  # the worker that wrote the last part died before finalising
                result.finalized.append(plan.run_id)
                continue
            plans[plan.run_id] = plan
            candidates |= {(plan.run_id, i) for i in missing if (plan.run_id, i) not in held}
        lost, suspects = confirm(self._suspects(), candidates)
        # The expiry only forgets suspects once sweeps stop; a long one does no harm, since a
        # chunk seen again later has looked lost for all that time.
        self.client.set(
            SUSPECTS_KEY, json.dumps(sorted(suspects)), ex=max(60, int(self.interval_s * 4))
        )
        for run_id in sorted({r for r, _ in lost}):
            self._requeue(plans[run_id], sorted(i for r, i in lost if r == run_id), result)
        return result

    def _suspects(self) -> set[Chunk]:
        raw = self.client.get(SUSPECTS_KEY)
        return {(r, int(i)) for r, i in json.loads(raw)} if raw else set()

    def _requeue(self, plan: RunPlan, chunks: list[int], result: SweepResult) -> None:
        key = RESENT_PREFIX + plan.run_id
        counts = [int(self.client.hincrby(key, str(i), 1)) for i in chunks]
        self.client.expire(key, 7 * 86400)
        give_up = [i for i, n in zip(chunks, counts, strict=True) if n > self.max_resends]
        if give_up:
            mark_failed(plan, give_up, self.max_resends)
            result.failed[plan.run_id] = give_up
            log.error("run %s failed: chunk(s) %s keep failing", plan.run_id, give_up[:10])
            return
        self.requeue(plan, chunks)
        result.requeued[plan.run_id] = chunks
        log.warning("run %s: re-queued %d lost chunk(s) %s", plan.run_id, len(chunks), chunks[:10])
