"""Runs, training and scrapes from Python: the same service the CLI and the page call
(jobs.service), with the settings found as the CLI finds them."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from anigenre.config import Settings
from anigenre.jobs.runs.status import RunStatus
from anigenre.jobs.service import runs
from anigenre.jobs.service.dispatch import Dispatcher, InProcess
from anigenre.jobs.service.wiring import queue_for

log = logging.getLogger("anigenre")

PathLike = str | os.PathLike
Inputs = PathLike | Sequence[PathLike]


class Run:
    """A prediction run, by id: ask how it stands, wait for it, read its rows. Any
    process with the same settings can follow it (``Run(run_id)``)."""

    def __init__(
        self,
        run_id: str,
        *,
        data_dir: PathLike | None = None,
        settings: Settings | None = None,
    ):
        from anigenre import _settings

        self.id = run_id
        self._settings = _settings(settings, data_dir)

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def status(self) -> RunStatus:
        """``state`` is one of queued, running, stalled, interrupted, failed, complete."""
        return runs.status(self._settings, self.id)

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until complete; raises DataError if it failed or was interrupted and
        AnigenreError on timeout (``anigenre.errors``)."""
        return runs.wait(self._settings, self.id, timeout=timeout)

    def table(self) -> pd.DataFrame:
        """The run's rows so far, one per input, in input order."""
        return runs.table(self._settings, self.id)


def predict(
    inputs: Inputs,
    out: PathLike | None = None,
    *,
    model: str = "latest",
    force: bool = False,
    top_k: int = 4,
    chunk_size: int | None = None,
    engine: str | None = None,
    data_dir: PathLike | None = None,
    settings: Settings | None = None,
) -> Run | None:
    """Predict folders or files (local or ``s3://``) in this process, into ``out``
    (default: the data dir), as ``anigenre predict`` does; returns when the run is
    complete. Files that already have an ok row for the model are skipped unless
    ``force``; None when nothing was left to predict."""
    from anigenre import _settings

    s = _settings(settings, data_dir)
    return _submitted(s, InProcess(s), inputs, out, model, force, top_k, chunk_size, engine)


def submit(
    inputs: Inputs,
    out: PathLike | None = None,
    *,
    broker: str | None = None,
    model: str = "latest",
    force: bool = False,
    top_k: int = 4,
    chunk_size: int | None = None,
    engine: str | None = None,
    data_dir: PathLike | None = None,
    settings: Settings | None = None,
) -> Run | None:
    """Queue the prediction on the broker (``broker``, else the settings'), one task per
    chunk, as ``anigenre jobs submit predict`` does; returns at once. Without a broker the
    run is predicted in a thread of this process (jobs.service.background), and this
    returns as soon as it is planned: follow it with ``Run.status()``/``wait()``. None when
    nothing was left to predict."""
    from anigenre import _settings

    s = _settings(settings, data_dir)
    if broker:
        s = s.model_copy(update={"broker_url": broker})
    return _submitted(s, queue_for(s), inputs, out, model, force, top_k, chunk_size, engine)


def _submitted(
    settings: Settings,
    dispatcher: Dispatcher,
    inputs: Inputs,
    out,
    model: str,
    force: bool,
    top_k: int,
    chunk_size: int | None,
    engine: str | None,
) -> Run | None:
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    done = runs.submit(
        settings,
        [str(p) if str(p).startswith("s3://") else Path(p) for p in paths],
        dispatcher,
        model=model,
        out=None if out is None else str(out) if str(out).startswith("s3://") else Path(out),
        top_k=top_k,
        chunk_size=chunk_size,
        force=force,
        engine=engine,
    )
    if done.run_id is None:
        log.info("nothing new to predict: every input already has an ok row (force=True redoes)")
        return None
    log.info(done.describe())
    return Run(done.run_id, settings=settings)


def train(*, data_dir: PathLike | None = None, settings: Settings | None = None, **config) -> str:
    """Train on the data dir's dataset, as ``anigenre train``; ``config``: the fields of
    ``anigenre.models.config.TrainConfig`` (``backbone``, ``epochs``, ``seed``, ...).
    Returns the new model's id."""
    from anigenre import _settings
    from anigenre.jobs.stages.calls import train as train_call
    from anigenre.models.config import TrainConfig

    s = _settings(settings, data_dir)
    return train_call(s, TrainConfig(**config).as_dict())["model_id"]


def scrape(
    *, data_dir: PathLike | None = None, settings: Settings | None = None, **request
) -> dict:
    """Scrape AniList into the data dir, as ``anigenre scrape``; ``request``: the fields
    of ``anigenre.scraper.run.ScrapeRequest`` (``years=(2013, 2021)``, ``incremental``,
    ...). Returns the summary (titles, pages, posters by status, requests)."""
    from anigenre import _settings
    from anigenre.jobs.stages.calls import scrape as scrape_call
    from anigenre.scraper.request import ScrapeRequest

    s = _settings(settings, data_dir)
    return scrape_call(s, ScrapeRequest(**request).to_json())
