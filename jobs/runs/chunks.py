"""Running one chunk of a prediction run: the same code in-process and in a Celery worker."""

from __future__ import annotations

import datetime as dt

import numpy as np
from anigenre.core.predictions import prediction_table
from anigenre.jobs.runs.inputs import InputReader
from anigenre.jobs.runs.layout import parts_folder, run_folder
from anigenre.jobs.runs.plan import RunPlan, fs_path


def execute_chunk(plan: RunPlan, index: int, predictor, now: dt.datetime | None = None) -> dict:
    """Predict chunk ``index`` and write its part: one row per entry, in order, so the
    part is complete by :mod:`jobs.runs.parts`' rule. Idempotent.

    Each content is predicted once; its byte-identical copies (the plan keeps them in
    the same chunk) get rows of their own with the same probabilities, once their bytes
    are checked to be still the planned ones. A copy that changed, or of a file that
    failed, is decoded itself: errors such as ``changed`` belong to a path, not a content.
    """
    entries = plan.chunk_entries(index)  # its manifest only, whatever the run's size
    reader = InputReader(plan.s3)
    first: dict[str, int] = {}
    source = [first.setdefault(e["sha256"], i) if e["sha256"] else i for i, e in enumerate(entries)]
    results = _predict(predictor, entries, [i for i, s in enumerate(source) if s == i], reader)
    retry = [
        i
        for i, s in enumerate(source)
        if s != i and ("probs" not in results[s] or not _unchanged(entries[i], reader))
    ]
    results.update(_predict(predictor, entries, retry, reader))
    items = [
        {"path": e["path"], "sha256": e["sha256"], **results.get(i, results[source[i]])}
        for i, e in enumerate(entries)
    ]
    table = prediction_table(
        model_id=plan.model_id,
        vocab=predictor.vocab,
        thresholds=np.asarray(predictor.thresholds),
        top_k_n=plan.top_k,
        items=items,
        now=now or dt.datetime.now(dt.UTC),
    )
    # One whole object on S3 (a PUT is atomic); locally the temp file goes in the run's
    # bookkeeping folder, not beside the part: a reader of the predictions folder mid-run
    # (Polars) refuses any file that is not a part.
    name = f"{parts_folder(plan.run_id)}/{plan.part_name(index)}"
    plan.out.write_table(name, table, tmp_dir=run_folder(plan.run_id))
    ok = sum(1 for i in items if "probs" in i)
    return {"run_id": plan.run_id, "chunk": index, "ok": ok, "error": len(items) - ok}


def decode_ahead(plan: RunPlan, index: int, predictor) -> None:
    """Start decoding chunk ``index``'s first files (``execute_chunk`` will use them)."""
    seen: set[str] = set()
    firsts = []
    for e in plan.chunk_entries(index):  # the files its first pass decodes: one per content
        if not e["sha256"] or e["sha256"] not in seen:
            seen.add(e["sha256"])
            firsts.append(e)
    predictor.decode_ahead(
        [fs_path(e) for e in firsts], [e["sha256"] for e in firsts], read=InputReader(plan.s3)
    )


def _unchanged(entry: dict, reader: InputReader) -> bool:
    return reader.digest(fs_path(entry))[1] == entry["sha256"]


def _predict(
    predictor, entries: list[dict], positions: list[int], reader: InputReader
) -> dict[int, dict]:
    """Position -> {"probs": array} or {"error": "reason: detail"} for those ``positions``."""
    if not positions:
        return {}
    out: dict[int, dict] = {}
    order = iter(positions)
    for batch, probs in predictor.predict_files(
        [fs_path(entries[i]) for i in positions],
        [entries[i]["sha256"] for i in positions],
        read=reader,
    ):
        rows = iter(probs)
        for path, ok in zip(batch.paths, batch.ok, strict=True):
            out[next(order)] = {"probs": next(rows)} if ok else {"error": batch.errors[path]}
    return out
