"""Bulk prediction runs: plan -> chunks -> one Parquet part per chunk -> finalise.

Layout under the output dir::

    predictions/run_id=<id>/_plan.json       inputs (path, size, sha256) and chunk bounds
    predictions/run_id=<id>/part-00000.parquet  one per chunk, written atomically
    predictions/run_id=<id>/_queued.json     its chunks are on the broker (jobs.sweeper watches)
    predictions/run_id=<id>/_failed.json     chunks the workers keep failing on, and why
    predictions/run_id=<id>/_manifest.json   written last; its presence marks a complete run

A chunk always writes the same file name, so redoing a chunk (a killed worker's message
delivered again, two workers racing) replaces rows and can never duplicate them. Files
whose names start with ``_`` are skipped by pyarrow.dataset and DuckDB readers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq

from core.atomic import write_text_atomic
from core.errors import ConfigError, DataError
from core.schemas import RUN_PARTITION

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
RUNS_INDEX = Path("runs")
MANIFEST, QUEUED, FAILED = "_manifest.json", "_queued.json", "_failed.json"


@dataclass
class RunPlan:
    run_id: str
    model_id: str
    out_dir: str
    created: str
    top_k: int
    chunk_size: int
    inputs: list[dict]  # {"path", "size", "sha256"}; sha256 None when unreadable
    chunks: list[list[int]]  # [start, end) into inputs
    duplicates: list[dict] = field(default_factory=list)  # {"path", "same_as"}
    already_predicted: int = 0

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.out_dir, self.run_id)

    def part_path(self, index: int) -> Path:
        return self.run_dir / f"part-{index:05d}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / MANIFEST

    @property
    def queued_path(self) -> Path:
        return self.run_dir / QUEUED

    @property
    def failed_path(self) -> Path:
        return self.run_dir / FAILED


def run_dir_for(out_dir: str | Path, run_id: str) -> Path:
    return Path(out_dir) / "predictions" / f"run_id={run_id}"


def discover(paths: list[Path]) -> list[Path]:
    """Files named directly, plus image files found recursively in named folders."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path} does not exist; give image files or folders of them")
    return [p.resolve() for p in found]


def file_digest(path: Path) -> tuple[int | None, str | None]:
    try:
        data = path.read_bytes()
    except OSError:
        return None, None
    return len(data), hashlib.sha256(data).hexdigest()


def existing_ok_shas(out_dir: Path, model_id: str) -> set[str]:
    """sha256 of every file this model already predicted ok under ``out_dir``."""
    root = Path(out_dir) / "predictions"
    if not any(root.glob("run_id=*/part-*.parquet")):
        return set()
    data = pads.dataset(
        root, format="parquet", partitioning=pads.partitioning(RUN_PARTITION, flavor="hive")
    )
    table = data.to_table(
        columns=["sha256"],
        filter=(pads.field("model_id") == model_id) & (pads.field("status") == "ok"),
    )
    return set(table["sha256"].to_pylist())


def plan_run(
    paths: list[Path],
    *,
    model_id: str,
    out_dir: Path,
    data_dir: Path,
    top_k: int = 4,
    chunk_size: int = 64,
    force: bool = False,
    now: dt.datetime | None = None,
) -> RunPlan:
    now = now or dt.datetime.now(dt.UTC)
    files = discover(paths)
    if not files:
        raise ConfigError("no image files found in the given paths")
    inputs, duplicates, first = [], [], {}
    for path in files:
        size, sha = file_digest(path)
        if sha is not None and sha in first:
            duplicates.append({"path": str(path), "same_as": first[sha]})
            continue
        if sha is not None:
            first[sha] = str(path)
        inputs.append({"path": str(path), "size": size, "sha256": sha})
    done = set() if force else existing_ok_shas(out_dir, model_id)
    todo = [i for i in inputs if i["sha256"] is None or i["sha256"] not in done]
    chunks = [[s, min(s + chunk_size, len(todo))] for s in range(0, len(todo), chunk_size)]
    plan = RunPlan(
        run_id=f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
        model_id=model_id,
        out_dir=str(Path(out_dir).resolve()),
        created=now.isoformat(),
        top_k=top_k,
        chunk_size=chunk_size,
        inputs=todo,
        chunks=chunks,
        duplicates=duplicates,
        already_predicted=len(inputs) - len(todo),
    )
    write_text_atomic(plan.run_dir / "_plan.json", json.dumps(asdict(plan)))
    write_text_atomic(
        Path(data_dir) / RUNS_INDEX / f"{plan.run_id}.json",
        json.dumps({"run_id": plan.run_id, "out_dir": plan.out_dir, "created": plan.created}),
    )
    return plan


def indexed_run_dir(data_dir: Path, run_id: str) -> Path:
    """Where run ``run_id`` writes, from its small index entry (no plan is read)."""
    index = Path(data_dir) / RUNS_INDEX / f"{run_id}.json"
    try:
        out_dir = json.loads(index.read_text())["out_dir"]
    except FileNotFoundError:
        raise ConfigError(f"no run '{run_id}'; 'anigenre jobs list' shows the runs") from None
    return run_dir_for(out_dir, run_id)


def load_plan(data_dir: Path, run_id: str) -> RunPlan:
    plan_file = indexed_run_dir(data_dir, run_id) / "_plan.json"
    return RunPlan(**json.loads(plan_file.read_text()))


def list_runs(data_dir: Path) -> list[str]:
    folder = Path(data_dir) / RUNS_INDEX
    return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []


def chunk_done(plan: RunPlan, index: int) -> bool:
    """A part counts only if it holds exactly its chunk's rows."""
    path = plan.part_path(index)
    if not path.exists():
        return False
    start, end = plan.chunks[index]
    return pq.read_metadata(path).num_rows == end - start


def missing_chunks(plan: RunPlan) -> list[int]:
    return [i for i in range(len(plan.chunks)) if not chunk_done(plan, i)]


def finalize(plan: RunPlan, now: dt.datetime | None = None) -> dict:
    """Verify every part, then write ``_manifest.json``. Safe to call twice."""
    missing = missing_chunks(plan)
    if missing:
        raise DataError(f"run {plan.run_id} is missing {len(missing)} part(s): {missing[:10]}")
    counts = {"ok": 0, "error": 0}
    for i in range(len(plan.chunks)):
        status = pq.read_table(plan.part_path(i), columns=["status"])["status"].to_pylist()
        for s in status:
            counts[s] += 1
    manifest = {
        "run_id": plan.run_id,
        "model_id": plan.model_id,
        "complete": True,
        "rows": sum(counts.values()),
        "ok": counts["ok"],
        "error": counts["error"],
        "parts": [plan.part_path(i).name for i in range(len(plan.chunks))],
        "duplicates": plan.duplicates,
        "already_predicted": plan.already_predicted,
        "created": plan.created,
        "finished": (now or dt.datetime.now(dt.UTC)).isoformat(),
    }
    write_text_atomic(plan.manifest_path, json.dumps(manifest, indent=2))
    return manifest


def mark_queued(plan: RunPlan, now: dt.datetime | None = None) -> None:
    """Written once a run's chunks are published: before that a missing chunk may just not
    be sent yet, and in-process runs never get it, so the sweeper leaves those alone."""
    at = (now or dt.datetime.now(dt.UTC)).isoformat()
    write_text_atomic(plan.queued_path, json.dumps({"queued_at": at}))
    plan.failed_path.unlink(missing_ok=True)


def mark_failed(plan: RunPlan, chunks: list[int], resends: int) -> None:
    reason = (
        f"chunk(s) {chunks[:10]} still have no part after {resends} re-queues: "
        "their task fails on the workers (see the worker logs)"
    )
    write_text_atomic(plan.failed_path, json.dumps({"chunks": chunks, "reason": reason}))
