"""The demo's data and helpers: the shared posters split into a labelled folder and the
held-out 2022 titles, the scrape request (full, then incremental), the model to reuse,
and the worker a queued demo runs on. The ``anigenre demo`` command formats the steps."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

from anigenre.config import Settings
from anigenre.scraper.request import ScrapeRequest
from anigenre.scraper.store import RawStore

DEMO_YEARS = (2013, 2021)  # the paper's period
HELD_OUT_YEAR = "2022"
# The labelled folders beside posters/ that the default recipe trains on: the MAL
# thumbnails (150 px) bring the rare genres most of their examples, the AniList small
# covers (~100 px) more franchises; each helps on posters of franchises never seen
# (bench/transfer.py; docs/benchmarks.md, "Issue 19: data and protocol").
EXTRA_FOLDERS = ("posters-mal-thumbs", "posters-anilist-small")


def labelled_folders(shared_data: Path, first: Path) -> list[Path]:
    """``first`` (the demo's share of posters/), then each of ``EXTRA_FOLDERS`` there is."""
    extra = [shared_data / name for name in EXTRA_FOLDERS]
    return [first, *(f for f in extra if (f / "labels.csv").exists())]


def split_posters(shared_posters: Path, dest: Path) -> tuple[Path, Path]:
    """Two labelled folders: everything before 2022, and 2022 alone. Copies, not links:
    an import refuses a link that points outside its images/ folder (it is how a folder
    could smuggle in any file on the machine)."""
    with open(shared_posters / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows, fields = list(reader), reader.fieldnames
    folders = {}
    for name, keep in (
        ("labelled", lambda r: r["year"] != HELD_OUT_YEAR),
        ("inbox-2022", lambda r: r["year"] == HELD_OUT_YEAR),
    ):
        folder = dest / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        chosen = [r for r in rows if keep(r)]
        for r in chosen:
            copy = folder / "images" / r["file"]
            if copy.is_symlink():  # left by a demo from before imports refused links
                copy.unlink()
            if not copy.exists():
                shutil.copyfile(shared_posters / "images" / r["file"], copy)
        with open(folder / "labels.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(chosen)
        folders[name] = folder
    return folders["labelled"], folders["inbox-2022"]


def demo_request(settings: Settings, years: tuple[int, int] = DEMO_YEARS) -> ScrapeRequest:
    """The full scrape the first time; afterwards an incremental one, which keeps the
    titles and posters already stored (an unfinished scrape of either kind resumes)."""
    full = ScrapeRequest(years=years, overlap_s=settings.incremental_overlap_s)
    incremental = dataclasses.replace(full, incremental=True)
    store = RawStore(settings.data_dir)
    saved = store.load_checkpoint()
    if saved is not None:
        return incremental if saved.get("key") == incremental.key() else full
    if store.media_path.exists() and store.watermark(years) is not None:
        return incremental
    return full


def reusable_model(settings: Settings, config) -> str | None:
    """The newest model trained on the current dataset with ``config``, if any."""
    from anigenre.core.dataset import fingerprint
    from anigenre.core.dataset_store import DATASET_PATH, read_dataset
    from anigenre.models.registry import list_models

    dataset, _ = read_dataset(settings.data_dir / DATASET_PATH)
    wanted = (fingerprint(dataset), json.loads(json.dumps(config.as_dict())))
    for manifest in reversed(list_models(settings.data_dir)):
        if (manifest.dataset.fingerprint, manifest.config) == wanted:
            return manifest.model_id
    return None


@contextlib.contextmanager
def demo_worker(settings: Settings):
    """A real Celery worker on every queue, for as long as the demo runs; its log is in
    the data dir."""
    from anigenre.jobs.queue.app import worker_argv

    env = {
        **os.environ,
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "ANIGENRE_BROKER_URL": settings.broker_url,
        "ANIGENRE_ANILIST_URL": settings.anilist_url,
        "ANIGENRE_RATE_LIMIT_PER_MIN": str(settings.rate_limit_per_min),
        "ANIGENRE_SHARED_DIR": str(settings.shared_dir),
    }
    with open(settings.data_dir / "demo-worker.log", "w") as log:
        worker = subprocess.Popen(
            worker_argv("scrape,train,predict", "demo"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)
