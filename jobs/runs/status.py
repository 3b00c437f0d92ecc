"""How far a run has got, read from its parts and markers on disk (no broker needed)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from jobs.runs.markers import failure
from jobs.runs.parts import PartCounts
from jobs.runs.plan import RunPlan


@dataclass
class RunStatus:
    run_id: str
    chunks_done: int
    chunks_total: int
    rows_ok: int
    rows_error: int
    rows_total: int
    complete: bool
    rate_per_s: float | None
    eta_s: float | None
    failed: str | None = None


def run_status(plan: RunPlan, counts: PartCounts | None = None) -> RunStatus:
    """Progress from the parts on disk; pass the same ``counts`` to successive polls.
    A complete run is read from its manifest, which holds the verified counts."""
    if plan.manifest_path.exists():
        return _from_manifest(plan)
    counts = counts or PartCounts()
    ok = err = done = 0
    latest = None
    for i in range(len(plan.chunks)):
        part = counts(plan, i)
        if part is None:
            continue
        done += 1
        ok += part[0]
        err += part[1]
        latest = max(latest or part[2], part[2])
    rows = ok + err
    elapsed = (latest - dt.datetime.fromisoformat(plan.created).timestamp()) if latest else None
    rate = rows / elapsed if elapsed and elapsed > 0 else None
    remaining = len(plan.inputs) - rows
    return RunStatus(
        run_id=plan.run_id,
        chunks_done=done,
        chunks_total=len(plan.chunks),
        rows_ok=ok,
        rows_error=err,
        rows_total=len(plan.inputs),
        complete=False,
        rate_per_s=rate,
        eta_s=remaining / rate if rate and remaining else (0.0 if not remaining else None),
        failed=failure(plan),
    )


def _from_manifest(plan: RunPlan) -> RunStatus:
    manifest = json.loads(plan.manifest_path.read_text())
    took = (
        dt.datetime.fromisoformat(manifest["finished"])
        - dt.datetime.fromisoformat(manifest["created"])
    ).total_seconds()
    return RunStatus(
        run_id=plan.run_id,
        chunks_done=len(plan.chunks),
        chunks_total=len(plan.chunks),
        rows_ok=manifest["ok"],
        rows_error=manifest["error"],
        rows_total=len(plan.inputs),
        complete=True,
        rate_per_s=manifest["rows"] / took if took > 0 and manifest["rows"] else None,
        eta_s=0.0,
    )
