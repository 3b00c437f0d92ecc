"""The stages a queue runs, as JSON in and JSON out.

A Celery task (jobs.queue.tasks) and the in-process dispatcher (jobs.service.dispatch)
call exactly these functions, so a queued job does what its in-process twin does. Each
is named by its task's short name (``jobs.tasks.<name>``) and goes to its queue.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from anigenre.config import Settings


def scrape(settings: Settings, request: dict) -> dict:
    # requests and BeautifulSoup come with the scraper: a predict worker never pays
    # their import (a tenth of its cold start).
    from anigenre.jobs.stages.scrape import scrape as _scrape
    from anigenre.scraper.request import ScrapeRequest

    s = _scrape(settings, ScrapeRequest.from_json(request))
    return {
        "titles": s.titles,
        "pages": s.pages,
        "posters": dict(s.posters),
        "requests": s.requests,
        "rate_limited": s.rate_limited,
    }


def preprocess(
    settings: Settings,
    years: list | None = None,
    require_score: bool = False,
    require_studio: bool = False,
) -> dict:
    # pandas comes with the dataset stages: a predict worker never pays its import.
    from anigenre.core.dataset import Filters
    from anigenre.jobs.stages.data import preprocess as _preprocess

    filters = Filters(tuple(years) if years else None, require_score, require_studio)
    change = _preprocess(settings, filters)
    return {"total": change.total, "added": change.added, "splits": change.splits}


def import_dataset(settings: Settings, folder: str, replace: bool = False) -> dict:
    from anigenre.jobs.stages.data import import_dataset as _import_dataset

    change = _import_dataset(settings, Path(folder), replace=replace)
    return {"total": change.total, "added": change.added, "skipped": len(change.skipped)}


def train(settings: Settings, config: dict) -> dict:
    # Keras comes with these: only the process that trains pays its import.
    from anigenre.jobs.stages.training import train_model
    from anigenre.models.config import TrainConfig

    model_id, manifest = train_model(settings, TrainConfig.from_dict(config))
    return {"model_id": model_id, "test": manifest.metrics_summary["test"]}


# name -> (function, queue)
CALLS: dict[str, tuple[Callable[..., dict], str]] = {
    "scrape": (scrape, "scrape"),
    "preprocess": (preprocess, "train"),
    "import_dataset": (import_dataset, "train"),
    "train": (train, "train"),
}


def task_name(name: str) -> str:
    """The Celery task's fixed name: messages already queued keep working across upgrades."""
    return f"jobs.tasks.{name}"
