"""Running one chunk of a prediction run: the same code in-process and in a Celery worker."""

from __future__ import annotations

import datetime as dt

import numpy as np

from core.predictions import prediction_table
from core.tables import write_table
from jobs.runs.plan import RunPlan


def execute_chunk(plan: RunPlan, index: int, predictor, now: dt.datetime | None = None) -> dict:
    """Predict chunk ``index`` and write its part; returns counts. Idempotent."""
    start, end = plan.chunks[index]
    entries = plan.inputs[start:end]
    items = []
    for batch, probs in predictor.predict_files(
        [e["path"] for e in entries], [e["sha256"] for e in entries]
    ):
        ok_rows = iter(probs)
        for path, ok in zip(batch.paths, batch.ok, strict=True):
            items.append(
                {"path": path, "probs": next(ok_rows)}
                if ok
                else {"path": path, "error": batch.errors[path]}
            )
    for item, entry in zip(items, entries, strict=True):
        item["sha256"] = entry["sha256"]
    table = prediction_table(
        model_id=plan.model_id,
        vocab=predictor.vocab,
        thresholds=np.asarray(predictor.thresholds),
        top_k_n=plan.top_k,
        items=items,
        now=now or dt.datetime.now(dt.UTC),
    )
    write_table(plan.part_path(index), table)
    ok = sum(1 for i in items if "probs" in i)
    return {"run_id": plan.run_id, "chunk": index, "ok": ok, "error": len(items) - ok}
