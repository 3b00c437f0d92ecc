"""Each queued command takes its in-process twin's flags, and workers started by
``anigenre worker`` run with the settings of that command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from anigenre.jobs.cli import build_parser
from anigenre.models.config import TrainConfig

from tests.procs import ROOT, own_redis, run_cli
from tests.test_jobs import _clean_env, make_folder, trained  # noqa: F401 - fixture


def _options(argv: list[str]) -> set[str]:
    parser = build_parser()
    for name in argv:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    hidden = {"--data-dir", "--config", "--broker", "-h", "--help"}
    return {o for a in parser._actions for o in a.option_strings} - hidden


@pytest.mark.parametrize("command", ["scrape", "train"])
def test_queued_twin_takes_every_flag_of_its_command(command):
    # scrape's --endpoint, --rate-limit and --concurrency are the worker's settings, not the
    # request's: a queued scrape runs with the worker's.
    settings_only = {"--endpoint", "--rate-limit", "--concurrency"}
    assert _options([command]) - settings_only == _options(["jobs", "submit", command])


def _queued(client, queue: str) -> dict:
    (raw,) = client.lrange(queue, 0, -1)
    message = json.loads(raw)
    import base64

    body = json.loads(base64.b64decode(message["body"]))
    return body[1]  # protocol 2: [args, kwargs, embed]


def test_submit_train_queues_the_config_train_would_run(tmp_path):
    flags = ["--backbone", "custom_cnn", "--weights", "none", "--epochs", "7", "--lr", "0.01"]
    flags += ["--loss", "focal", "--ensemble", "2", "--input-size", "64x48", "--tta", "flip"]
    with own_redis(tmp_path / "redis") as (url, client):
        env = {**_clean_env(), "ANIGENRE_DATA_DIR": str(tmp_path / "data")}
        done = run_cli("jobs", "--broker", url, "submit", "train", *flags, env=env)
        assert done.returncode == 0, done.stderr
        config = TrainConfig.from_dict(_queued(client, "train")["config"])
    assert config == TrainConfig(
        backbone="custom_cnn",
        weights="none",
        epochs=7,
        learning_rate=0.01,
        loss="focal",
        ensemble=2,
        input_size=(64, 48),
        tta=("flip",),
    )


def test_worker_command_uses_the_named_config_not_the_one_in_the_cwd(tmp_path, replay):
    """``anigenre --config good.toml worker`` in a folder whose anigenre.toml is broken:
    the worker and the submit both read good.toml, and the scrape request's --formats and
    --no-posters reach the worker."""
    server = replay(rate_limit=6000)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "anigenre.toml").write_text("this is [not toml\n")
    data = tmp_path / "data"
    with own_redis(tmp_path / "redis") as (url, _):
        good = tmp_path / "good.toml"
        good.write_text(
            f'data_dir = "{data}"\nbroker_url = "{url}"\nanilist_url = "{server.url}"\n'
            "rate_limit_per_min = 6000\n"
        )
        env = {**_clean_env(), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cli = [sys.executable, "-m", "anigenre.jobs.cli", "--config", str(good)]
        log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(
            [*cli, "worker", "-Q", "scrape", "--loglevel", "INFO"],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            submit = [*cli, "jobs", "submit", "scrape", "--years", "2019"]
            submit += ["--formats", "MOVIE", "--no-posters"]
            done = subprocess.run(submit, cwd=cwd, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            media = data / "raw" / "media.parquet"
            deadline = time.monotonic() + 120
            while not media.exists():
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.2)
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)
            log.close()
    titles = pd.read_parquet(media)
    assert len(titles) > 0 and set(titles["format"]) == {"MOVIE"}
    assert not (data / "raw" / "posters.parquet").exists()
    assert not list(cwd.glob("celerybeat-schedule*"))


def test_predict_chunk_size_comes_from_the_environment(trained, tmp_path):  # noqa: F811
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 5, with_bad=False)
    env = {
        **_clean_env(),
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "ANIGENRE_PREDICT_CHUNK_SIZE": "2",
    }
    done = run_cli("predict", str(folder), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "out" / "prediction-runs").glob("*/")
    plan = json.loads((run_dir / "_plan.json").read_text())
    assert plan["chunk_size"] == 2 and plan["n_chunks"] == 3  # the header (planfile)
