"""Progress for a person waiting on a long command: lines while it runs when stderr is a
pipe (a log, CI), none with --quiet, and a line when a request is being retried."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys

import pytest
from anigenre.core.progress import Progress

from tests.conftest import ROOT
from tests.procs import run_cli
from tests.synthetic import poster_folder, synthetic_dataset, trained_tiny_model

N_POSTERS = 200


def _env(**extra) -> dict:
    """The user's environment, with a progress line at every step so the test is fast."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "TF_", "ABSL"))}
    env["ANIGENRE_PROGRESS_EVERY_S"] = "0"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _counts(stderr: str, desc: str) -> list[tuple[int, int]]:
    """(done, total) of each '<desc>: done/total ...' progress line."""
    return [(int(m[1]), int(m[2])) for m in re.finditer(rf"^{desc}: (\d+)/(\d+) ", stderr, re.M)]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_pipe_gets_a_line_every_interval_and_the_last_count():
    out, clock = io.StringIO(), Clock()
    with Progress("predict", unit="poster", total=150, every_s=5, stream=out, clock=clock) as p:
        for _ in range(15):
            clock.now += 1
            p.update(10)
    lines = out.getvalue().splitlines()
    assert lines[0] == "predict: 50/150 posters (33%), 10.0/s, ETA 10 s"
    assert lines[1].startswith("predict: 100/150 posters (67%)")
    assert lines[-1].startswith("predict: 150/150 posters (100%)")
    assert len(lines) == 3


def test_a_short_phase_prints_nothing_and_quiet_prints_nothing_at_all():
    out, clock = io.StringIO(), Clock()
    with Progress("predict", total=3, every_s=5, stream=out, clock=clock) as p:
        p.update(3)  # done before the first interval: the result says it all
    quiet = io.StringIO()
    with Progress("scrape", every_s=0, quiet=True, stream=quiet) as p:
        p.update(1)
        p.note("cannot reach the endpoint; retry 1/6 in 1 s")
    assert out.getvalue() == quiet.getvalue() == ""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("progress-data")
    settings, _ = trained_tiny_model(data, shared_dir)
    return settings.data_dir


def _predict_cmd(posters, *flags) -> list[str]:
    cmd = [sys.executable, "-m", "anigenre.jobs.cli", *flags, "predict", str(posters)]
    return [*cmd, "--chunk-size", "8", "--out", str(posters.parent / "out")]


def test_predict_into_a_pipe_prints_progress_lines_while_it_runs(model_dir, tmp_path):
    posters = poster_folder(tmp_path / "posters", N_POSTERS, seed=7)
    proc = subprocess.Popen(
        _predict_cmd(posters),
        cwd=ROOT,
        env=_env(ANIGENRE_DATA_DIR=model_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen, running_at_first_line = [], None
    for line in proc.stderr:
        seen.append(line)
        if running_at_first_line is None and line.startswith("predict: "):
            running_at_first_line = proc.poll() is None
    stdout = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, "".join(seen)
    counts = _counts("".join(seen), "predict")
    assert running_at_first_line, "".join(seen)
    assert any(0 < done < N_POSTERS for done, _ in counts), "".join(seen)
    assert counts[-1] == (N_POSTERS, N_POSTERS)
    assert f"{N_POSTERS} ok, 0 error" in stdout


def test_quiet_silences_progress_but_not_the_result(model_dir, tmp_path):
    posters = poster_folder(tmp_path / "posters", 40, seed=9)
    env = _env(ANIGENRE_DATA_DIR=model_dir)
    done = subprocess.run(
        _predict_cmd(posters, "--quiet"), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "40 ok, 0 error" in done.stdout
    assert done.stderr == ""


def test_jobs_wait_reports_how_far_the_run_got(model_dir, tmp_path):
    """A predict killed part-way: ``jobs wait`` shows where it stands, then says why it
    cannot finish; ``--quiet`` (after the subcommand too) leaves only that line."""
    many = 600  # ~2 s of predicting left after the first line: time to kill it mid-run
    posters = poster_folder(tmp_path / "posters", many, seed=11)
    env = _env(ANIGENRE_DATA_DIR=model_dir)
    proc = subprocess.Popen(
        _predict_cmd(posters), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    for line in proc.stderr:
        if line.startswith(b"predict: "):
            proc.kill()
            break
    proc.wait(timeout=60)
    run_id = re.search(rb"^run (\S+):", proc.stdout.read(), re.M)[1].decode()
    waited = run_cli("jobs", "wait", run_id, env=env)
    assert waited.returncode == 1 and "interrupted" in waited.stderr, waited.stderr
    assert any(0 < n < many for n, _ in _counts(waited.stderr, "wait")), waited.stderr
    hushed = run_cli("jobs", "wait", run_id, "--quiet", env=env)
    assert hushed.returncode == 1 and hushed.stderr.count("\n") == 1, hushed.stderr
    assert "interrupted" in hushed.stderr


def test_train_reports_embeddings_and_epochs(tmp_path, shared_dir):
    data = tmp_path / "data"
    synthetic_dataset(data, n=96)
    args = ["train", "--backbone", "mobilenet_v2_0.35", "--weights", "none"]
    args += ["--input-size", "64x48", "--epochs", "3", "--patience", "3", "--ensemble", "1"]
    result = run_cli(
        *args,
        "--bootstrap",
        "10",
        env=_env(ANIGENRE_DATA_DIR=data, ANIGENRE_SHARED_DIR=shared_dir),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    embedded = _counts(result.stderr, "embed")
    assert any(0 < done < total for done, total in embedded), result.stderr
    epochs = _counts(result.stderr, "train")
    assert [done for done, _ in epochs][:3] == [1, 2, 3] and epochs[0][1] == 3, result.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connecting is refused


def test_a_scrape_that_cannot_reach_its_endpoint_says_it_is_retrying(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/"
    env = _env(
        ANIGENRE_DATA_DIR=tmp_path / "data",
        ANIGENRE_MAX_RETRIES=2,
        ANIGENRE_BACKOFF_BASE_S=0.05,
        ANIGENRE_BACKOFF_CAP_S=0.1,
    )
    result = run_cli("scrape", "--years", "2020-2020", "--no-posters", "--endpoint", url, env=env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    retries = [i for i, line in enumerate(lines) if re.match(r"scrape: .*retry 1/2 in ", line)]
    assert retries and f"cannot reach {url}" in lines[retries[0]], result.stderr
    assert lines[-1].startswith("anigenre: error: ") and retries[0] < len(lines) - 1
    quiet = run_cli(
        "--quiet", "scrape", "--years", "2020-2020", "--no-posters", "--endpoint", url, env=env
    )
    assert quiet.returncode == 1 and quiet.stderr.count("\n") == 1, quiet.stderr
