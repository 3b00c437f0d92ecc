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

A chunk is orphaned when its message is unacknowledged but no live worker holds it: its
worker was killed, and kombu would restore it only after the visibility timeout (an hour).
Every predict worker publishes the delivery tags it holds (``publish_holdings``) every
``heartbeat_s`` under a key that expires after ``HOLDINGS_TTL_BEATS`` beats. A message no
holdings list names, on consecutive sweeps spanning ``grace_s`` (a key's life plus one
beat, so any live holder has listed it since it first looked orphaned), is taken from the
unacked hash and its chunk re-queued. A healthy slow worker keeps listing its message, so
it is never taken from it. Either way the sweep leaves what it found in the run dir
(jobs.runs.stalls), for ``jobs status``.

The sweep looks only at the runs marked active in the index (jobs.runs.index.active_runs),
and drops the marker of one it finds complete, failed or not on the broker: a finished
run costs nothing from the next sweep on, so a sweep's requests follow the runs at work,
not the index's history. Runs recorded before the markers existed are looked at once,
``SCAN_BATCH`` per sweep, newest first (``Sweeper.migrate``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from anigenre.core.errors import ConfigError, DataError, StorageError
from anigenre.core.storage import Store
from anigenre.jobs.runs.index import (
    active_runs,
    indexed_run_files,
    list_runs,
    load_plan,
    mark_active,
    mark_finished,
    read_active_scan,
    write_active_scan,
)
from anigenre.jobs.runs.markers import finalize, mark_failed
from anigenre.jobs.runs.parts import missing_chunks
from anigenre.jobs.runs.plan import FAILED, MANIFEST, QUEUED, RunPlan
from anigenre.jobs.runs.stalls import (
    LOST,
    ORPHANED,
    REQUEUED,
    SUSPECT,
    Stall,
    read_stalls,
    write_stalls,
)
from kombu.transport.redis import Channel

log = logging.getLogger(__name__)

PREDICT_QUEUE = "predict"
PREDICT_TASK = "jobs.tasks.predict_chunk"
LOCK_KEY = "anigenre:sweeper:lock"
SUSPECTS_KEY = "anigenre:sweeper:suspects"
ORPHANS_KEY = "anigenre:sweeper:orphans"
RESENT_PREFIX = "anigenre:sweeper:resent:"
HOLDINGS_PREFIX = "anigenre:worker:"
HOLDINGS_TTL_BEATS = 3  # a worker missing this many beats in a row is taken for dead
# Runs recorded before the active markers, looked at per sweep until all have been: a
# bounded cost per sweep (about 4 requests each) for the sweeps of the first upgrade.
SCAN_BATCH = 200

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


def unacked_chunks(unacked: dict[bytes, bytes]) -> dict[str, Chunk]:
    """Delivery tag -> chunk of each unacknowledged predict message; kombu keeps
    ``[message, exchange, routing_key]`` under the tag."""
    held = {}
    for tag, value in unacked.items():
        chunk = chunk_of_message(json.loads(value)[0])
        if chunk is not None:
            held[tag.decode() if isinstance(tag, bytes) else tag] = chunk
    return held


def in_flight(unacked_values: Iterable[bytes]) -> set[Chunk]:
    """Chunks held by some worker, live or dead."""
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


def holdings_key(hostname: str, pid: int) -> str:
    # Per process: two workers may share a node name (the default one, on one host).
    return f"{HOLDINGS_PREFIX}{hostname}:{pid}"


def publish_holdings(client, key: str, tags: Iterable[str] | None, heartbeat_s: float) -> None:
    """A worker's heartbeat: the delivery tags it holds unacknowledged. None says it cannot
    tell, which stops every orphan re-queue while its key lives."""
    body = {"tags": None if tags is None else sorted(tags)}
    client.set(key, json.dumps(body), px=max(1, int(heartbeat_s * HOLDINGS_TTL_BEATS * 1000)))


def live_holdings(client) -> set[str] | None:
    """The delivery tags live workers hold; None when one of them cannot tell."""
    keys = list(client.scan_iter(match=HOLDINGS_PREFIX + "*", count=500))
    held: set[str] = set()
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between the scan and the read
        tags = json.loads(raw)["tags"]
        if tags is None:
            return None
        held.update(tags)
    return held


@dataclass(frozen=True)
class SweepResult:
    requeued: dict[str, list[int]]
    failed: dict[str, list[int]]
    finalized: list[str]
    orphaned: dict[str, list[int]] = field(default_factory=dict)  # re-queued: worker gone


def is_watched(files: Store) -> bool:
    """A run the sweep mends: on the broker (queued), neither complete nor failed."""
    return files.exists(QUEUED) and not (files.exists(MANIFEST) or files.exists(FAILED))


def watched_runs(data_dir, s3=None) -> Iterable[RunPlan]:
    """Queued runs that are neither complete nor failed, among the runs marked active; a
    marked run that is not one loses its marker. Only the watched runs' plans are read: a
    finished run's plan can list a hundred thousand files."""
    for run_id in active_runs(data_dir, s3):
        try:
            plan = _watched(data_dir, run_id, s3)
        except (OSError, ValueError, DataError, StorageError):
            continue  # the store did not answer for this run: looked at again next sweep
        if plan is not None:
            yield plan


def _watched(data_dir, run_id: str, s3) -> RunPlan | None:
    """The run's plan if the sweep watches it; else its active marker is dropped. A
    watched run whose plan cannot be read (a bucket's error reads as damage too) raises
    and keeps its marker: the old sweep skipped such a run each time as well, and a
    dropped marker would be gone for good."""
    files = _files_if_watched(data_dir, run_id, s3)
    if files is None:
        mark_finished(data_dir, run_id, s3)
        # Whatever puts a run (back) on the broker marks it active after doing so
        # (jobs.queue.publish), so a look after the drop sees a publish that raced it.
        files = _files_if_watched(data_dir, run_id, s3)
        if files is None:
            return None
        mark_active(data_dir, run_id, s3)
    return load_plan(data_dir, run_id, s3, files)


def _files_if_watched(data_dir, run_id: str, s3) -> Store | None:
    """The run's folder if the sweep watches the run, else None."""
    try:
        files = indexed_run_files(data_dir, run_id, s3)
    except (ConfigError, ValueError, KeyError):
        return None  # its index entry was removed or is damaged: not ours to mend
    return files if is_watched(files) else None


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
        heartbeat_s: float,
        s3=None,
        unacked_key: str = Channel.unacked_key,
        unacked_index_key: str = Channel.unacked_index_key,
    ) -> None:
        self.client, self.data_dir, self.requeue = client, data_dir, requeue
        self.s3 = s3  # reaches an s3:// data dir and output dirs
        self.interval_s, self.max_resends, self.unacked_key = interval_s, max_resends, unacked_key
        self.unacked_index_key = unacked_index_key
        # A holder lists a message within a beat of taking it, and its key outlives it by
        # HOLDINGS_TTL_BEATS beats: past both, a message no key names has no live holder.
        self.grace_s = heartbeat_s * (HOLDINGS_TTL_BEATS + 1)
        self.migrated = False  # the runs recorded before the active markers are all marked

    def queue_depth(self) -> int:
        names = [PREDICT_QUEUE] + [
            f"{PREDICT_QUEUE}{Channel.sep}{p}" for p in Channel.priority_steps if p
        ]
        return sum(self.client.llen(n) for n in names)

    def sweep(self, own_tags: Iterable[str] = ()) -> SweepResult | None:
        """None when another worker holds this interval's lock. ``own_tags``: what the
        sweeping worker holds, in case its own heartbeat is late."""
        if not self.client.set(LOCK_KEY, "1", nx=True, ex=max(1, int(self.interval_s * 0.8))):
            return None
        seconds, micros = self.client.time()
        now = seconds + micros / 1e6  # Redis's clock: every worker's sweep reads the same one
        result = SweepResult({}, {}, [])
        depth = self.queue_depth()
        unacked = unacked_chunks(self.client.hgetall(self.unacked_key))
        plans, missing = {}, set()
        try:
            self.migrate()
        except (OSError, StorageError) as exc:  # the sweep of the marked runs goes on
            log.warning("older runs not scanned this sweep: %s", exc)
        for plan in watched_runs(self.data_dir, self.s3):
            gaps = missing_chunks(plan)
            if not gaps:
                finalize(plan)  # the worker that wrote the last part died before finalising
                mark_finished(self.data_dir, plan.run_id, self.s3)
                result.finalized.append(plan.run_id)
                continue
            plans[plan.run_id] = plan
            missing |= {(plan.run_id, i) for i in gaps}
        stalls: dict[Chunk, Stall] = {}
        self._sweep_lost(plans, missing, set(unacked.values()), depth, now, stalls, result)
        live = self._sweep_orphans(plans, missing, unacked, set(own_tags), now, stalls, result)
        self._record_stalls(plans, missing, unacked, live, stalls)
        return result

    def migrate(self) -> None:
        """Mark active the runs recorded before the markers existed that the sweep still
        watches: ``SCAN_BATCH`` a sweep, newest first, and never again once the index
        says all were looked at (each worker process reads that once). The index's own
        listing (keys only) is read on those sweeps alone."""
        if self.migrated:
            return
        scan = read_active_scan(self.data_dir, self.s3) or {"done": False, "below": None}
        if scan.get("done"):
            self.migrated = True
            return
        below = scan.get("below")
        older = [r for r in reversed(list_runs(self.data_dir, self.s3)) if not below or r < below]
        batch = older[:SCAN_BATCH]
        for run_id in batch:
            try:
                if is_watched(indexed_run_files(self.data_dir, run_id, self.s3)):
                    mark_active(self.data_dir, run_id, self.s3)
            except (OSError, ValueError, ConfigError, DataError, StorageError):
                continue  # removed by its owner, or unreadable: not ours to mend
        done = len(older) <= SCAN_BATCH
        write_active_scan(self.data_dir, done, batch[-1] if batch else below, self.s3)
        self.migrated = done
        if batch:
            log.info(
                "marked the active runs among %d older run(s)%s",
                len(batch),
                "" if done else f"; {len(older) - len(batch)} left for the next sweeps",
            )

    def _sweep_lost(self, plans, missing, in_unacked, depth, now, stalls, result) -> None:
        if depth:
            # Workers are busy; a lost chunk waits until the backlog drains.
            self.client.delete(SUSPECTS_KEY)
            return
        lost, suspects = confirm(self._suspects(), missing - in_unacked)
        # The expiry only forgets suspects once sweeps stop; a long one does no harm, since a
        # chunk seen again later has looked lost for all that time.
        self.client.set(
            SUSPECTS_KEY, json.dumps(sorted(suspects)), ex=max(60, int(self.interval_s * 4))
        )
        for chunk in suspects:
            stalls[chunk] = Stall(LOST, SUSPECT, _iso(now + self.interval_s))
        for run_id in sorted({r for r, _ in lost}):
            chunks = sorted(i for r, i in lost if r == run_id)
            if self._requeue(plans[run_id], chunks, result.requeued, result, "lost chunk(s)"):
                stalls.update({(run_id, i): Stall(LOST, REQUEUED, _iso(now)) for i in chunks})

    def _sweep_orphans(self, plans, missing, unacked, own_tags, now, stalls, result):
        """Re-queue the chunks whose unacked message no live worker holds. Returns the
        delivery tags live workers hold, or None when one of them cannot tell."""
        live = live_holdings(self.client)
        if live is None:
            log.warning("orphan check skipped: a worker cannot list the messages it holds")
            return None
        live |= own_tags
        unheld = {t: c for t, c in unacked.items() if t not in live and c in missing}
        # A message is suspected per delivery: kombu re-delivers under the same tag, so
        # the tag's delivery time (its unacked_index score) tells a new delivery apart.
        pipe = self.client.pipeline(transaction=False)
        for tag in unheld:
            pipe.zscore(self.unacked_index_key, tag)
        delivered = dict(zip(unheld, pipe.execute(), strict=True)) if unheld else {}
        previous = self._orphan_suspects()
        orphans, suspects = {}, {}
        for tag, chunk in unheld.items():
            key = f"{tag} {delivered[tag]}"
            first_seen = previous.get(key, now)
            if now - first_seen >= self.grace_s:
                orphans[tag] = chunk
            else:
                suspects[key] = first_seen
                stalls[chunk] = Stall(ORPHANED, SUSPECT, _iso(first_seen + self.grace_s))
        expiry = int(max(60, self.interval_s * 4, self.grace_s * 4))
        self.client.set(ORPHANS_KEY, json.dumps(suspects), ex=expiry)
        claimed = [chunk for tag, chunk in sorted(orphans.items()) if self._claim(tag)]
        for run_id in sorted({r for r, _ in claimed}):
            chunks = sorted({i for r, i in claimed if r == run_id})
            what = "chunk(s) whose worker is gone"
            if self._requeue(plans[run_id], chunks, result.orphaned, result, what):
                stalls.update({(run_id, i): Stall(ORPHANED, REQUEUED, _iso(now)) for i in chunks})
        return live

    def _claim(self, tag: str) -> bool:
        """Take an orphaned message out of kombu's unacked records; False when someone
        else (kombu's own restore, another sweep, its late ack) got there first."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.unacked_key, tag)
        pipe.zrem(self.unacked_index_key, tag)
        removed, _ = pipe.execute()
        return removed == 1

    def _record_stalls(self, plans, missing, unacked, live, stalls) -> None:
        """Leave this sweep's findings in each run dir. A chunk re-queued earlier stays
        marked while it waits in the queue; once a live worker holds it, or its part is
        written, the mark goes."""
        if live is None:
            held_live = set(unacked.values())
        else:
            held_live = {c for t, c in unacked.items() if t in live}
        for run_id, plan in plans.items():
            marks = {i: s for (r, i), s in stalls.items() if r == run_id}
            for i, s in read_stalls(plan).items():
                chunk = (run_id, i)
                waiting = chunk in missing and chunk not in held_live
                if s.state == REQUEUED and i not in marks and waiting:
                    marks[i] = s
            try:
                write_stalls(plan, marks)
            except OSError as exc:  # the marker is for people; the sweep's work is done
                log.warning("run %s: cannot write its stall marker: %s", run_id, exc)

    def _suspects(self) -> set[Chunk]:
        raw = self.client.get(SUSPECTS_KEY)
        return {(r, int(i)) for r, i in json.loads(raw)} if raw else set()

    def _orphan_suspects(self) -> dict[str, float]:
        raw = self.client.get(ORPHANS_KEY)
        return json.loads(raw) if raw else {}

    def _requeue(self, plan: RunPlan, chunks: list[int], into: dict, result, what: str) -> bool:
        """Re-queue ``chunks`` within their allowance, or fail the run; True if re-queued."""
        key = RESENT_PREFIX + plan.run_id
        counts = [int(self.client.hincrby(key, str(i), 1)) for i in chunks]
        self.client.expire(key, 7 * 86400)
        give_up = [i for i, n in zip(chunks, counts, strict=True) if n > self.max_resends]
        if give_up:
            mark_failed(plan, give_up, self.max_resends)
            mark_finished(self.data_dir, plan.run_id, self.s3)  # a resume marks it again
            result.failed[plan.run_id] = give_up
            log.error("run %s failed: chunk(s) %s keep failing", plan.run_id, give_up[:10])
            return False
        self.requeue(plan, chunks)
        into[plan.run_id] = chunks
        log.warning("run %s: re-queued %d %s %s", plan.run_id, len(chunks), what, chunks[:10])
        return True


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="seconds")
