"""Pipeline stages as plain functions of Settings: the CLI and the Celery tasks both call
these, so a queued job does exactly what its command does. No Celery here."""

from anigenre.jobs.stages.data import (
    DatasetChange,
    DatasetStats,
    dataset_stats,
    ensure_dataset,
    import_dataset,
    preprocess,
)
from anigenre.jobs.stages.predict import (
    load_predictor,
    plan_prediction,
    predict_in_process,
    report_run,
)
from anigenre.jobs.stages.scrape import scrape
from anigenre.jobs.stages.training import Evaluation, evaluate_model, train_model

__all__ = [
    "DatasetChange",
    "DatasetStats",
    "Evaluation",
    "dataset_stats",
    "ensure_dataset",
    "evaluate_model",
    "import_dataset",
    "load_predictor",
    "plan_prediction",
    "predict_in_process",
    "preprocess",
    "report_run",
    "scrape",
    "train_model",
]
