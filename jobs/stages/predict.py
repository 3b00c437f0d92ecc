"""Prediction stages: plan a run, run its chunks here, report on it."""

from __future__ import annotations

from pathlib import Path

from config import Settings
from jobs.runs.chunks import execute_chunk
from jobs.runs.index import load_plan, record_run
from jobs.runs.lease import hold_lease
from jobs.runs.markers import finalize
from jobs.runs.parts import chunk_done
from jobs.runs.plan import plan_run
from jobs.runs.reports import build_report


def plan_prediction(
    settings: Settings,
    paths,
    *,
    model_id: str,
    out_dir: Path | None,
    top_k: int = 4,
    chunk_size: int | None = None,
    force: bool = False,
):
    """Hash the inputs and write the run plan; needs no model and no TensorFlow."""
    from models.registry import resolve_model_id

    plan = plan_run(
        [Path(p) for p in paths],
        model_id=resolve_model_id(settings.data_dir, model_id),
        out_dir=out_dir or settings.data_dir,
        top_k=top_k,
        chunk_size=chunk_size or settings.predict_chunk_size,
        force=force,
    )
    record_run(settings.data_dir, plan)
    return plan


def load_predictor(settings: Settings, model_id: str):
    from models.predictor import Predictor
    from models.registry import load_artifact

    model, manifest = load_artifact(settings.data_dir, model_id)
    return Predictor(model, manifest, settings.max_image_pixels)


def predict_in_process(settings: Settings, plan, on_chunk=None, predictor=None) -> dict:
    """Run every chunk of ``plan`` here, then finalise. The embedded default: no broker.
    The run's lease tells ``jobs status`` this process is on it; killed, it goes stale."""
    with hold_lease(plan.run_dir):
        for index in range(len(plan.chunks)):
            if chunk_done(plan, index):  # a resumed run skips what is already written
                continue
            predictor = predictor or load_predictor(settings, plan.model_id)
            result = execute_chunk(plan, index, predictor)
            if on_chunk:
                on_chunk(result)
        return finalize(plan)


def report_run(settings: Settings, run_id: str, labels_csv: Path | None = None):
    from models.registry import load_manifest, vocabulary_of

    plan = load_plan(settings.data_dir, run_id)
    vocab = vocabulary_of(load_manifest(settings.data_dir, plan.model_id))
    return build_report(plan, vocab, labels_csv=labels_csv)
