"""What a worker process imports before its first task: its cold start."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("requests", "bs4", "tensorflow", "keras", "anigenre.scraper.client")


def test_the_worker_module_leaves_the_scraper_and_tensorflow_to_their_tasks(tmp_path):
    """Every worker's app schedules the incremental scrape (a ScrapeRequest) by default,
    but only a scrape task needs requests and BeautifulSoup, and only training Keras."""
    code = (
        "import sys, anigenre.jobs.queue.worker as w\n"
        "print(w.app.conf.beat_schedule['incremental-scrape']['task'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "ANIGENRE_DATA_DIR": str(tmp_path)}
    env.pop("ANIGENRE_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["jobs.tasks.scrape", "[]"]
