"""Planning a run: discover and hash the inputs, drop what is already predicted, cut chunks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.dataset as pads

from core.atomic import write_text_atomic
from core.errors import ConfigError
from core.schemas import RUN_PARTITION

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
PLAN, MANIFEST, QUEUED, FAILED = "_plan.json", "_manifest.json", "_queued.json", "_failed.json"


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
    write_text_atomic(plan.run_dir / PLAN, json.dumps(asdict(plan)))
    return plan
