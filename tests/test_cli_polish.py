"""The command line's rough edges a new user hit: version, help, suggestions, quiet
TensorFlow, readable and honest ``jobs`` output, hints that work, a demo that reuses."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from anigenre.config import load_settings
from anigenre.jobs import stages
from anigenre.jobs.cli.demo_cmd import next_steps
from anigenre.jobs.cli.predict_cmd import NAME_WIDTH, format_top_k
from anigenre.jobs.runs.plan import RunPlan
from anigenre.jobs.stages.demo import DEMO_YEARS, demo_request, reusable_model
from anigenre.jobs.stages.scrape import scrape
from anigenre.models.config import TrainConfig
from anigenre.scraper.run import ScrapeRequest

from tests.procs import ROOT, Worker, own_redis, run_cli
from tests.synthetic import poster_folder, synthetic_dataset

# TensorFlow's start-up and runtime chatter, as TF 2.21 prints it on a CPU machine.
TF_NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "cpu_feature_guard",
    "use_unbounded_threadpool",
    "port.cc",
    "XNNPACK delegate",  # LiteRT's notice when it first allocates tensors
)


def _env(**extra) -> dict:
    """The user's environment: no ANIGENRE_* and no TF_* set by whoever runs the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "TF_", "ABSL"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


TINY = ["--backbone", "custom_cnn", "--weights", "none", "--input-size", "40x32"]
TINY_CONFIG = dict(backbone="custom_cnn", weights="none", input_size=(40, 32), epochs=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    """A data dir with a tiny trained model (seconds to train)."""
    data = tmp_path_factory.mktemp("polish-data")
    synthetic_dataset(data, n=40)
    settings = load_settings(overrides={"data_dir": data, "shared_dir": shared_dir}, env={})
    config = TrainConfig(**TINY_CONFIG, ensemble=1, bootstrap=10)
    model_id, _ = stages.train_model(settings, config)
    return settings, model_id, config


def _posters(folder, n: int, seed: int = 1000):
    return poster_folder(folder, n, seed, "p{i:04d}")


# --- the parser ------------------------------------------------------------------------


def test_version_is_the_installed_one():
    result = run_cli("--version", env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"anigenre {version('anigenre')}"


def test_the_cli_offers_every_backbone_and_defaults_to_the_configs():
    from anigenre.jobs.cli.models_cmd import BACKBONE_NAMES, DEFAULT_BACKBONE
    from anigenre.models.backbones import BACKBONES

    assert set(BACKBONE_NAMES) == set(BACKBONES)
    assert TrainConfig().backbone == DEFAULT_BACKBONE


def test_train_flags_left_out_give_the_configs_defaults():
    """The flags spell their defaults out for --help (no Keras import there), so a default
    changed in TrainConfig must change here too."""
    import argparse

    from anigenre.jobs.cli.models_cmd import add_train_arguments, train_config

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert train_config(parser.parse_args([])) == TrainConfig()
    one = train_config(parser.parse_args(["--label-convention", "none", "--augment", "none"]))
    assert one.label_convention is None and one.augment == ()
    both = train_config(parser.parse_args(["--augment", "flip,zoom"]))
    assert both.augment == ("flip", "zoom")


def test_the_cli_offers_every_augment_view():
    from anigenre.jobs.cli.models_cmd import AUGMENT_VIEWS
    from anigenre.models.config import AUGMENT_VIEWS as CONFIG_VIEWS

    assert AUGMENT_VIEWS == CONFIG_VIEWS
    result = run_cli("train", "--augment", "mirror", env=_env())
    assert result.returncode == 2
    assert "unknown view 'mirror'; choose from flip, zoom or none" in result.stderr


def test_help_shows_every_default_and_no_none():
    train = run_cli("train", "--help", env=_env()).stdout
    assert "custom_cnn} default: mobilenet_v2_1.0_with_0.35" in " ".join(train.split())
    assert "--seed SEED default: 0" in " ".join(train.split())  # an option without help text
    assert "(default: 60)" in train and "(default: 1000)" in train
    predict = " ".join(run_cli("predict", "--help", env=_env()).stdout.split())
    assert "--top-k TOP_K default: 4" in predict and "(default: latest)" in predict
    wait = run_cli("jobs", "wait", "--help", env=_env()).stdout
    assert "(default: 3600.0)" in wait
    for text in (train, predict, wait):
        assert "default: None" not in text and "default: False" not in text


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["predcit", "x.png"], "predict"),
        (["jobs", "stauts", "x"], "status"),
        (["train", "--backbone", "resnet5"], "resnet50"),
    ],
)
def test_a_mistyped_choice_gets_the_nearest_name(argv, meant):
    result = run_cli(*argv, env=_env())
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"did you mean '{meant}'?" in line and "--help" in line


# --- the top-k table -------------------------------------------------------------------


def test_top_k_table_keeps_its_columns_with_long_file_names(tmp_path):
    names = ["short.png", "x" * 80 + "_end.png", "b" * NAME_WIDTH + ".jpg", "bad.jpg"]
    plan = RunPlan(
        run_id="r", model_id="m", out_dir=str(tmp_path), created="2026-01-01T00:00:00+00:00",
        top_k=2, chunk_size=4, inputs=[{"path": f"/in/{n}"} for n in names], chunks=[[0, 4]],
    )  # fmt: skip
    plan.parts_dir.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "path": [f"/in/{n}" for n in names],
                "status": ["ok", "ok", "ok", "error"],
                "top_genres": [["Action", "Drama"]] * 3 + [[]],
                "predicted": [["Action"]] * 3 + [[]],
                "error": [None, None, None, "corrupt: cut off"],
            }
        ),
        plan.part_path(0),
    )
    header, *lines = format_top_k(pq.read_table(plan.part_path(0)).to_pandas()).splitlines()
    column = 2 + NAME_WIDTH + 1
    assert header[column:].split() == ["predicted", "top", "2", "by", "probability"]
    assert [line[column:].split(None, 1) for line in lines] == [["Action", "Action, Drama"]] * 3 + [
        ["error:", "corrupt: cut off"]
    ]
    long_name = lines[1][2 : 2 + NAME_WIDTH]
    assert "..." in long_name and long_name.endswith("_end.png") and long_name.startswith("xxx")


# --- quiet TensorFlow ------------------------------------------------------------------


def test_train_and_predict_print_no_tensorflow_start_up_lines(tmp_path):
    data = tmp_path / "data"
    synthetic_dataset(data, n=30)
    env = _env(ANIGENRE_DATA_DIR=data)
    args = ["--epochs", "2", "--ensemble", "1", "--bootstrap", "10"]
    trained = run_cli("train", *TINY, *args, env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    predicted = run_cli("predict", str(_posters(tmp_path / "in", 3)), env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    for result in (trained, predicted):
        noise = [line for line in result.stderr.splitlines() if any(n in line for n in TF_NOISE)]
        assert noise == []
    assert "3 ok, 0 error" in predicted.stdout


def test_captured_stderr_gives_back_everything_but_tensorflow_notices():
    code = (
        "import os\n"
        "from models.quiet import filtered_stderr\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called"
        " are written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1795876281.206761   12258 port.cc:153] oneDNN custom"
        " operations are on.\\n')\n"
        "    os.write(2, b'E0000 00:00:1795876281.206761   12258 x.cc:1] a real error\\n')\n"
        "    os.write(2, b'Traceback: something broke\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "E0000 00:00:1795876281.206761   12258 x.cc:1] a real error",
        "Traceback: something broke",
    ]


# --- interrupted and finished runs -----------------------------------------------------


def test_interrupted_predict_names_the_one_command_that_finishes_it(trained, tmp_path):
    settings, _, _ = trained
    n = 1200
    folder = _posters(tmp_path / "in", n)
    out = tmp_path / "out"
    env = _env(ANIGENRE_DATA_DIR=settings.data_dir)
    argv = [sys.executable, "-m", "anigenre.jobs.cli", "predict", str(folder), "--out", str(out)]
    # Keras, the slower engine: LiteRT can finish small posters before the signal lands.
    proc = subprocess.Popen(
        [*argv, "--chunk-size", "2", "--engine", "keras"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C's default action, even where the suite itself runs with SIGINT ignored (a
        # background job of a non-interactive shell), which Python would keep ignoring.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # The signal lands once the up-front lines are out: the run is recorded and the model is
    # still loading, so chunks are left however fast the machine is.
    head = []
    for line in proc.stdout:
        head.append(line)
        if "if interrupted" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate(timeout=60)
    stdout = "".join(head) + rest
    assert proc.returncode == 130, stderr
    run_id = stdout.split()[1].rstrip(":")
    hints = [line for line in stderr.splitlines() if "anigenre" in line]
    resume = f"anigenre --data-dir {settings.data_dir} jobs resume {run_id}"
    assert hints == [f"anigenre: interrupted; '{resume}' finishes this run"]
    assert f"'{resume}'" in stdout  # the line printed up front says the same

    resumed = run_cli(*shlex.split(resume)[1:], env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = pd.read_parquet(out / "predictions" / f"run_id={run_id}")
    assert len(rows) == n and rows["path"].is_unique


def test_resume_of_a_complete_run_keeps_its_finish_time_and_rate(trained, tmp_path):
    settings, _, _ = trained
    plan = stages.plan_prediction(
        settings, [_posters(tmp_path / "in", 4)], model_id="latest", out_dir=tmp_path / "out"
    )
    stages.predict_in_process(settings, plan)
    before = json.loads(plan.manifest_path.read_text())
    env = _env(ANIGENRE_DATA_DIR=settings.data_dir)
    status = run_cli("jobs", "status", plan.run_id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    time.sleep(1.1)
    resumed = run_cli("jobs", "resume", plan.run_id, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(plan.manifest_path.read_text())["finished"] == before["finished"]
    again = run_cli("jobs", "status", plan.run_id, "--json", env=env)
    assert json.loads(again.stdout) == json.loads(status.stdout)
    assert json.loads(again.stdout)["complete"] is True


# --- jobs through a broker -------------------------------------------------------------


def test_an_unknown_id_with_a_broker_is_an_error_not_pending(tmp_path):
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=tmp_path / "data", ANIGENRE_BROKER_URL=url)
        for argv in (["status", "nope"], ["status", "nope", "--json"], ["wait", "nope"]):
            result = run_cli("jobs", *argv, env=env)
            assert result.returncode == 2, (argv, result.stdout)  # as without a broker
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith("anigenre: error: no run or task 'nope'")
            assert "PENDING" not in result.stdout + result.stderr


def test_submit_with_no_worker_says_how_to_start_one(tmp_path):
    data = tmp_path / "data"
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=data, ANIGENRE_BROKER_URL=url)
        result = run_cli("jobs", "submit", "scrape", "--years", "2021", env=env)
        assert result.returncode == 0, result.stderr
        task_id = result.stdout.strip()
        port = url.rsplit(":", 1)[1].split("/")[0]
        start = f"anigenre --data-dir {data} worker -Q scrape --broker redis://127.0.0.1:{port}/0"
        assert f"no worker is consuming 'scrape'; start one with: {start}" in result.stderr
        # The task is ours, so it is listed and reported as queued, not unknown.
        status = run_cli("jobs", "status", task_id, env=env)
        assert status.returncode == 0, status.stderr
        assert f"task {task_id} (scrape on 'scrape'" in status.stdout
        assert "queued, not started" in status.stdout


def test_wait_timeout_says_to_wait_again_not_to_resume(trained, tmp_path):
    settings, _, _ = trained
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=settings.data_dir, ANIGENRE_BROKER_URL=url)
        folder = _posters(tmp_path / "in", 3)
        submitted = run_cli("jobs", "submit", "predict", str(folder), env=env)
        assert submitted.returncode == 0, submitted.stderr
        assert "no worker is consuming 'predict'" in submitted.stderr
        run_id = submitted.stdout.split()[0]
        waited = run_cli("jobs", "wait", run_id, "--timeout", "1", env=env)
        assert waited.returncode == 1
        (line,) = waited.stderr.strip().splitlines()
        assert f"jobs wait {run_id}' waits again" in line
        assert "no worker is consuming 'predict'" in line
        assert "resume" not in line and "retries ran out" not in line


def test_tasks_read_as_words_fail_with_exit_1_and_workers_log_one_line_each(
    tmp_path, replay, shared_dir
):
    data = tmp_path / "data"  # no dataset: the train task fails
    server = replay()
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=data, ANIGENRE_BROKER_URL=url, ANIGENRE_SHARED_DIR=shared_dir)
        worker_env = {
            **env,
            "ANIGENRE_ANILIST_URL": server.url,
            "ANIGENRE_RATE_LIMIT_PER_MIN": "6000",
        }
        worker = Worker("polish", worker_env, tmp_path / "worker.log", queues="scrape,train")
        worker.start()
        try:
            scrape = run_cli("jobs", "submit", "scrape", "--years", "2021", "--no-posters", env=env)
            train = run_cli("jobs", "submit", "train", *TINY, env=env, timeout=120)
            assert scrape.returncode == 0 and train.returncode == 0, scrape.stderr + train.stderr
            assert "no worker is consuming" not in scrape.stderr + train.stderr
            scrape_id, train_id = scrape.stdout.strip(), train.stdout.strip()

            done = run_cli("jobs", "wait", scrape_id, "--timeout", "120", env=env, timeout=180)
            assert done.returncode == 0, done.stderr
            (line,) = done.stdout.strip().splitlines()
            assert line.startswith(f"task {scrape_id} (scrape on 'scrape', submitted ")
            assert ": done: " in line and " titles" in line and "{" not in line

            failed = run_cli("jobs", "wait", train_id, "--timeout", "120", env=env, timeout=180)
            assert failed.returncode == 1
            (line,) = failed.stdout.strip().splitlines()
            assert f"task {train_id} (train on 'train'" in line
            assert ": failed: DataError: no dataset at " in line

            as_json = run_cli("jobs", "status", train_id, "--json", env=env)
            assert as_json.returncode == 1
            view = json.loads(as_json.stdout)
            assert view["state"] == "FAILURE" and view["error"].startswith("DataError: no dataset")
            ok = json.loads(run_cli("jobs", "status", scrape_id, "--json", env=env).stdout)
            assert ok["state"] == "SUCCESS" and ok["result"]["titles"] > 0

            listed = run_cli("jobs", "list", env=env)
            assert listed.returncode == 0
            assert [line.split()[1] for line in listed.stdout.splitlines()] == [
                scrape_id,
                train_id,
            ]
            tasks = json.loads(run_cli("jobs", "list", "--json", env=env).stdout)["tasks"]
            assert [(t["id"], t["name"], t["state"]) for t in tasks] == [
                (scrape_id, "scrape", "SUCCESS"),
                (train_id, "train", "FAILURE"),
            ]
        finally:
            worker.stop()
    log = (tmp_path / "worker.log").read_text().splitlines()
    for task_id in (scrape_id, train_id):
        assert len([line for line in log if task_id in line]) == 1, log


# --- celery beat -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "celery", "-A", "anigenre.jobs.queue.worker", "beat", "--loglevel", "INFO"],
        ["-m", "anigenre.jobs.cli", "beat"],
    ],
    ids=["celery-beat", "anigenre-beat"],
)
def test_beat_keeps_its_schedule_file_in_the_data_dir(tmp_path, argv):
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=data, ANIGENRE_BROKER_URL=url, PYTHONPATH=ROOT)
        with open(tmp_path / "beat.log", "w") as log:
            beat = subprocess.Popen(
                [sys.executable, *argv], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 60
            while not list(data.glob("celerybeat-schedule*")) and not list(cwd.iterdir()):
                assert beat.poll() is None, (tmp_path / "beat.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "beat.log").read_text()
                time.sleep(0.1)
        finally:
            beat.terminate()
            beat.wait(timeout=30)
    assert list(cwd.iterdir()) == []


# --- the demo --------------------------------------------------------------------------


def test_the_commands_the_demo_suggests_work_on_its_data_dir(trained, tmp_path):
    settings, _, _ = trained
    inbox = _posters(tmp_path / "inbox", 3, seed=7000)
    plan = stages.plan_prediction(settings, [inbox], model_id="latest", out_dir=None)
    stages.predict_in_process(settings, plan)
    steps = next_steps("anigenre", settings.data_dir, inbox, plan.run_id)
    assert len(steps) >= 3
    env = _env()  # nothing from the environment: the commands carry the data dir
    for step in steps:
        prog, *argv = shlex.split(step)
        assert prog == "anigenre" and argv[:2] == ["--data-dir", str(settings.data_dir)]
        result = run_cli(*argv, env=env, timeout=300)
        assert result.returncode == 0, (step, result.stderr)
        assert "no trained models" not in result.stdout + result.stderr


def test_the_demo_run_again_scrapes_incrementally_without_refetching_posters(replay, make_settings):
    years = (2021, 2021)  # the demo's 2013-2021 takes minutes; one year shows the same
    first = replay()
    settings = make_settings(first.url)
    assert demo_request(settings) == ScrapeRequest(years=DEMO_YEARS, overlap_s=3600)
    full = scrape(settings, demo_request(settings, years))
    assert full.posters["ok"] > 0 and full.posters_cached == 0

    second = replay()  # a new demo starts a new replay server, on another port
    again = settings.model_copy(update={"anilist_url": second.url})
    request = demo_request(again, years)
    assert request.incremental
    summary = scrape(again, request)
    assert summary.pages == 1  # the first page reaches the cutoff
    assert summary.titles < full.titles / 10
    assert second.stats()["requests"].get("covers", 0) <= 2 * summary.titles


def test_the_demo_run_again_reuses_a_model_trained_on_the_same_data(trained, tmp_path):
    settings, model_id, config = trained
    assert reusable_model(settings, config) == model_id
    other = TrainConfig(**TINY_CONFIG, ensemble=1, bootstrap=11)
    assert reusable_model(settings, other) is None
    for n, expected in ((40, model_id), (41, None)):  # the same dataset again; another one
        data = tmp_path / f"n{n}"
        shutil.copytree(settings.data_dir / "models", data / "models")
        synthetic_dataset(data, n=n)
        assert reusable_model(settings.model_copy(update={"data_dir": data}), config) == expected
