"""Celery tasks: thin wrappers that take ids and paths, call the library, return small JSON.

TensorFlow is imported, and a model loaded, only inside a task, so it happens once per
worker process after the fork (TensorFlow is not fork-safe) and never in beat or the CLI.
"""

from __future__ import annotations

import resource

from celery import Task

from core.errors import RetryableError
from jobs.celery_app import app


def _settings():
    return app.anigenre_settings


class PredictTask(Task):
    """Keeps one loaded Predictor per worker process (Celery makes one Task per process)."""

    _predictors: dict | None = None

    def predictor(self, model_id: str):
        from jobs.stages import load_predictor

        if self._predictors is None:
            self._predictors = {}
        if model_id not in self._predictors:
            self._predictors.clear()  # one model in memory at a time
            self._predictors[model_id] = load_predictor(_settings(), model_id)
        return self._predictors[model_id]


@app.task(
    name="jobs.tasks.predict_chunk",
    base=PredictTask,
    bind=True,
    autoretry_for=(RetryableError,),
    retry_backoff=True,
    max_retries=5,
)
def predict_chunk(self, run_id: str, index: int) -> dict:
    from jobs.chunks import execute_chunk
    from jobs.runs import chunk_done, finalize, load_plan

    plan = load_plan(_settings().data_dir, run_id)
    if chunk_done(plan, index):
        # A message delivered twice (restored after a slow start, or re-queued by the
        # sweeper) finds its part written: the rows are there, so skip the model.
        result = {"run_id": run_id, "chunk": index, "skipped": True}
    else:
        result = execute_chunk(plan, index, self.predictor(plan.model_id))
    # No chord: whichever chunk sees every part written finalises; doing it twice is harmless.
    if all(chunk_done(plan, i) for i in range(len(plan.chunks))):
        finalize(plan)
        result["finalized"] = True
    result["rss_kb"] = current_rss_kb()
    return result


def current_rss_kb() -> int:
    """Resident size now (ru_maxrss only ever grows, so it cannot show a leak levelling off)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@app.task(
    name="jobs.tasks.scrape", autoretry_for=(RetryableError,), retry_backoff=True, max_retries=3
)
def scrape(
    years: str, incremental: bool = False, posters: bool = True, formats: list | None = None
) -> dict:
    from jobs.cli.args import year_range
    from scraper.run import ScrapeRequest
    from scraper.wiring import build_scraper

    settings = _settings()
    request = ScrapeRequest(
        years=year_range(years),
        formats=tuple(formats) if formats else None,
        posters=posters,
        incremental=incremental,
        overlap_s=settings.incremental_overlap_s,
    )
    s = build_scraper(settings).run(request)
    return {
        "titles": s.titles,
        "pages": s.pages,
        "posters": dict(s.posters),
        "requests": s.requests,
    }


@app.task(name="jobs.tasks.preprocess")
def preprocess(
    years: str | None = None, require_score: bool = False, require_studio: bool = False
) -> dict:
    from core.dataset import Filters
    from jobs import stages
    from jobs.cli.args import year_range

    filters = Filters(year_range(years) if years else None, require_score, require_studio)
    change = stages.preprocess(_settings(), filters)
    return {"total": change.total, "added": change.added, "splits": change.splits}


@app.task(name="jobs.tasks.import_dataset")
def import_dataset(folder: str, replace: bool = False) -> dict:
    from pathlib import Path

    from jobs import stages

    change = stages.import_dataset(_settings(), Path(folder), replace=replace)
    return {"total": change.total, "added": change.added, "skipped": len(change.skipped)}


@app.task(name="jobs.tasks.train")
def train(config: dict) -> dict:
    from jobs import stages
    from models.config import TrainConfig

    cfg = dict(config)
    if cfg.get("input_size"):
        cfg["input_size"] = tuple(cfg["input_size"])
    cfg["tta"] = tuple(cfg.get("tta") or ())
    model_id, manifest = stages.train_model(_settings(), TrainConfig(**cfg))
    return {"model_id": model_id, "test": manifest["metrics_summary"]["test"]}
