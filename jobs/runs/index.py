"""The runs index: ``<data>/runs/<run_id>.json`` says where each run writes.

A run's files live under its output dir, which can be anywhere; the small index entry in
the data dir is how ``jobs status|wait|resume|list`` find them from a run id alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.atomic import write_text_atomic
from core.errors import ConfigError, DataError
from jobs.runs.legacy import migrate_run
from jobs.runs.plan import PLAN, RunPlan, run_dir_for

RUNS_INDEX = Path("runs")


def record_run(data_dir: Path, plan: RunPlan) -> None:
    write_text_atomic(
        Path(data_dir) / RUNS_INDEX / f"{plan.run_id}.json",
        json.dumps({"run_id": plan.run_id, "out_dir": plan.out_dir, "created": plan.created}),
    )


def indexed_run_dir(data_dir: Path, run_id: str) -> Path:
    """Run ``run_id``'s bookkeeping folder, from its small index entry (no plan is read).
    A run in the old layout has its files moved there first (jobs.runs.legacy)."""
    index = Path(data_dir) / RUNS_INDEX / f"{run_id}.json"
    try:
        out_dir = json.loads(index.read_text())["out_dir"]
    except FileNotFoundError:
        raise ConfigError(f"no run '{run_id}'; 'anigenre jobs list' shows the runs") from None
    migrate_run(out_dir, run_id)
    return run_dir_for(out_dir, run_id)


def load_plan(data_dir: Path, run_id: str) -> RunPlan:
    """The run's plan; a plan that is gone or damaged is a DataError that says which."""
    plan_file = indexed_run_dir(data_dir, run_id) / PLAN
    try:
        return RunPlan(**json.loads(plan_file.read_text()))
    except FileNotFoundError:
        why = f"{plan_file} is gone; was its output folder moved or deleted?"
    except (ValueError, TypeError) as exc:
        why = f"{plan_file} is damaged ({type(exc).__name__}: {exc})"
    raise DataError(f"run {run_id}: unreadable: {why}")


def list_runs(data_dir: Path) -> list[str]:
    folder = Path(data_dir) / RUNS_INDEX
    return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
