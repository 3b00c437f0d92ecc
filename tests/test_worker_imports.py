"""What a worker process imports before its first task, and how it starts: its cold start."""

from __future__ import annotations

import os
import subprocess
import sys

from anigenre.jobs import stages

from tests.procs import Worker, own_redis, run_cli

HEAVY = ("requests", "bs4", "tensorflow", "keras", "anigenre.scraper.client")
# pandas comes with pyarrow.dataset, the dataset stages and the reports (a third of a second).
NOT_FOR_A_CHUNK = (*HEAVY, "pandas", "pyarrow.dataset", "anigenre.jobs.stages.data")


def _imported(code: str, tmp_path, modules) -> list[str]:
    code += f"\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))\n"
    env = {**os.environ, "ANIGENRE_DATA_DIR": str(tmp_path)}
    env.pop("ANIGENRE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()


def test_the_worker_module_leaves_the_scraper_and_tensorflow_to_their_tasks(tmp_path):
    """Every worker's app schedules the incremental scrape (a ScrapeRequest) by default,
    but only a scrape task needs requests and BeautifulSoup, and only training Keras."""
    code = (
        "import anigenre.jobs.queue.worker as w\n"
        "print(w.app.conf.beat_schedule['incremental-scrape']['task'])"
    )
    assert _imported(code, tmp_path, HEAVY) == ["jobs.tasks.scrape", "[]"]


def test_a_predict_chunk_imports_neither_pandas_nor_the_other_stages(tmp_path):
    """What the predict task imports to run a chunk (the plan, the predictor, the part's
    writer, finalising): planning, datasets and reports stay with the processes that do
    them."""
    code = (
        "import anigenre.jobs.queue.worker\n"
        "from anigenre.jobs.runs.chunks import execute_chunk\n"
        "from anigenre.jobs.runs.index import index_home, load_plan, mark_finished\n"
        "from anigenre.jobs.runs.markers import finalize\n"
        "from anigenre.jobs.stages import load_predictor"
    )
    assert _imported(code, tmp_path, NOT_FOR_A_CHUNK) == ["[]"]


def test_the_command_line_imports_each_commands_libraries_only_when_it_runs(tmp_path):
    """``anigenre worker`` (and every other command) parses its arguments without the
    scraper's HTTP stack, pandas or Celery's own command line."""
    code = "from anigenre.jobs.cli import build_parser\nbuild_parser()"
    assert _imported(code, tmp_path, (*NOT_FOR_A_CHUNK, "celery.bin.celery")) == ["[]"]


def test_the_stages_package_names_each_stage_from_its_module():
    for name in stages.__all__:
        function = getattr(stages, name)
        assert function.__module__.startswith("anigenre.jobs.stages."), name


def test_anigenre_worker_starts_without_waiting_on_other_workers(tmp_path):
    """Mingle asks the other workers for their revoked tasks and waits a second for
    answers; nothing here revokes, so a worker starts without it, and still answers
    ``inspect`` (flower, the compose file's health check) and runs tasks."""
    with own_redis(tmp_path) as (url, _):
        env = {**os.environ, "ANIGENRE_DATA_DIR": str(tmp_path), "ANIGENRE_BROKER_URL": url}
        worker = Worker("lone", env, tmp_path / "worker.log").start()
        try:
            log = (tmp_path / "worker.log").read_text()
            ping = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "anigenre.jobs.queue.worker"]
                + ["inspect", "ping", "-t", "5", "-d", f"{worker.name}@{os.uname().nodename}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            worker.stop()
    assert "ready." in log
    assert "mingle: searching" not in log
    assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr


def test_a_worker_without_its_broker_says_so_in_one_line_and_exits_1(tmp_path):
    """Checked once before Celery starts: no retry banner, and nothing to 'resume'."""
    env = {**os.environ, "ANIGENRE_DATA_DIR": str(tmp_path)}
    env.pop("ANIGENRE_BROKER_URL", None)
    result = run_cli("worker", "--broker", "redis://:hunter2@127.0.0.1:1/0", env=env)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "cannot reach the broker at redis://:**@127.0.0.1:1/0" in line
    assert line.endswith(
        "start Redis there or pass --broker with one that runs, then run the command again"
    )
    assert "resume" not in line and "retries ran out" not in line and "hunter2" not in line
