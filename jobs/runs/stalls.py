"""Why a queued run's chunks are stalled: ``_stalled.json``, written by the workers' sweep.

``jobs status`` reads the run dir, never the broker; the sweep (jobs.queue.sweeper) is what
sees a chunk whose worker died or whose message the broker lost, so it leaves its findings
here: per chunk, what happened (``orphaned``: its worker stopped answering; ``lost``: the
broker lost its message), and what happens next (``suspect``: re-queued at the first sweep
after ``at`` if still so; ``requeued``: re-queued at ``at``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from anigenre.jobs.runs.layout import STALLED_MARKER
from anigenre.jobs.runs.plan import RunPlan

ORPHANED, LOST = "orphaned", "lost"
SUSPECT, REQUEUED = "suspect", "requeued"


@dataclass(frozen=True)
class Stall:
    kind: str  # ORPHANED or LOST
    state: str  # SUSPECT or REQUEUED
    at: str  # ISO time: when a suspect is re-queued at the earliest, or when it was


def read_stalls(plan: RunPlan) -> dict[int, Stall]:
    try:
        raw = json.loads(plan.files.read_bytes(STALLED_MARKER))
        return {int(i): Stall(**s) for i, s in raw["chunks"].items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError):
        return {}  # a marker we cannot read says nothing


def write_stalls(plan: RunPlan, stalls: dict[int, Stall]) -> None:
    """Replace the marker (remove it when nothing is stalled); untouched when unchanged,
    so a sweep every few seconds does not rewrite it."""
    if stalls == read_stalls(plan):
        return
    if not stalls:
        plan.files.delete(STALLED_MARKER)
        return
    body = {"chunks": {str(i): asdict(s) for i, s in sorted(stalls.items())}}
    plan.files.write_bytes(STALLED_MARKER, json.dumps(body, indent=1).encode())


def describe(stalls: dict[int, Stall]) -> str:
    """One clause per kind of stall, e.g. "chunk 3's worker stopped answering; re-queued
    at 14:02:10 by the workers' sweep"."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for index, s in sorted(stalls.items()):
        groups.setdefault((s.kind, s.state, s.at), []).append(index)
    return "; ".join(_clause(*key, chunks) for key, chunks in groups.items())


def _clause(kind: str, state: str, at: str, chunks: list[int]) -> str:
    one = len(chunks) == 1
    ids = ", ".join(str(i) for i in chunks[:8])
    if len(chunks) > 8:
        ids += f" (+{len(chunks) - 8})"
    if kind == ORPHANED:
        why = (
            f"chunk {ids}'s worker stopped answering"
            if one
            else (f"the workers of chunks {ids} stopped answering")
        )
    else:
        why = (
            f"chunk {ids}'s message was lost by the broker"
            if one
            else (f"the messages of chunks {ids} were lost by the broker")
        )
    clock = dt.datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S")
    if state == REQUEUED:
        return f"{why}; re-queued at {clock} by the workers' sweep"
    return f"{why}; the workers' sweep re-queues {'it' if one else 'them'} after {clock}"
