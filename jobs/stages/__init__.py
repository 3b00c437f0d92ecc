"""Pipeline stages as plain functions of Settings: the CLI and the Celery tasks both call
these, so a queued job does exactly what its command does. No Celery here.

Each name is imported from its module when first asked for: a predict worker takes
``load_predictor`` without the dataset, scrape and training stages and what they import
(pandas, requests; a fifth of its cold start). The scrape stage is
``jobs.stages.scrape.scrape``: a lazy name ``scrape`` here would be shadowed by its
module once that is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "data": (
        "DatasetChange",
        "DatasetStats",
        "dataset_stats",
        "ensure_dataset",
        "import_dataset",
        "preprocess",
    ),
    "predict": ("load_predictor", "plan_prediction", "predict_in_process", "report_run"),
    "training": ("Evaluation", "evaluate_model", "train_model"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

if TYPE_CHECKING:  # the same names for type checkers; at run time __getattr__ imports them
    from anigenre.jobs.stages.data import (  # noqa: F401
        DatasetChange,
        DatasetStats,
        dataset_stats,
        ensure_dataset,
        import_dataset,
        preprocess,
    )
    from anigenre.jobs.stages.predict import (  # noqa: F401
        load_predictor,
        plan_prediction,
        predict_in_process,
        report_run,
    )
    from anigenre.jobs.stages.training import Evaluation, evaluate_model, train_model  # noqa: F401

__all__ = sorted(_HOME_OF)


def __getattr__(name: str):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # asked once: later lookups don't come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
