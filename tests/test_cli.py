"""The CLI as a user runs it: real subprocesses, one-line errors, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.procs import run_cli


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return run_cli(*args, env=_env(env))


def _env(extra: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env.update(extra or {})
    return env


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["scrape"], "--years"),
        (["scrape", "--years", "2021-2013"], "2021-2013"),
        (["scrape", "--years", "twenty"], "write it like 2013-2021"),
        (["scrape", "--years", "2020", "--formats", "TV,CARTOON"], "choose from TV,TV_SHORT"),
        (["scrape", "--years", "2020", "--rate-limit", "-3"], "positive number"),
        (["frobnicate"], "invalid choice"),
        (["dataset", "import", "s3://bucket/posters"], "'s3://bucket/posters' is not a local path"),
        (["dataset", "stats", "--out", "s3://b/charts"], "is not a local path"),
        (["evaluate", "latest", "--folder", "s3://b/labelled"], "is not a local path"),
        (["predict", "x", "--out", "gs://b/preds"], "unsupported storage scheme 'gs://'"),
    ],
)
def test_wrong_arguments_get_one_line_that_says_what_to_do(args, fragment):
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0] and "--help" in lines[0]


def test_bad_environment_setting_is_one_line(tmp_path):
    result = cli("scrape", "--years", "2020", env={"ANIGENRE_POSTER_CONCURRENCY": "lots"})
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "poster_concurrency" in result.stderr
    )


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: nothing listens there
    env = {
        "ANIGENRE_DATA_DIR": str(tmp_path),
        "ANIGENRE_MAX_RETRIES": "1",
        "ANIGENRE_BACKOFF_CAP_S": "0.1",
    }
    result = cli("scrape", "--years", "2020", "--endpoint", f"http://127.0.0.1:{port}", env=env)
    assert result.returncode == 1
    *retries, last = result.stderr.strip().splitlines()
    assert last.startswith("anigenre: error:") and "NetworkError" not in last
    # Before it: only the progress lines saying it is retrying (issue 18, item 16).
    assert all(line.startswith("scrape: cannot reach") for line in retries), retries


def _checkpoint_pages(path) -> int:
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(y["next_page"] - 1 for y in state["years"].values())


def test_scrape_killed_at_any_moment_resumes_with_every_title_once(
    replay, tmp_path, recorded, posters_dir
):
    server = replay()
    data = tmp_path / "data"
    env = {
        "ANIGENRE_DATA_DIR": str(data),
        "ANIGENRE_ANILIST_URL": server.url,
        "ANIGENRE_RATE_LIMIT_PER_MIN": "3000",
    }
    args = [sys.executable, "-m", "anigenre.jobs.cli", "scrape", "--years", "2020-2021"]
    checkpoint = data / "raw" / "_scrape_checkpoint.json"
    # Kill twice, at different points: after a few pages, and later mid-way.
    for kill_after in (2, 9):
        proc = subprocess.Popen(
            args, cwd=ROOT, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while _checkpoint_pages(checkpoint) < kill_after and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert checkpoint.exists()

    result = cli("scrape", "--years", "2020-2021", env=env)
    assert result.returncode == 0, result.stderr
    assert "resumed from checkpoint" in result.stdout
    media = pd.read_parquet(data / "raw" / "media.parquet")
    posters = pd.read_parquet(data / "raw" / "posters.parquet")
    expected = recorded.ids((2020, 2021))
    assert len(media) == len(expected) and set(media["anilist_id"]) == expected
    assert len(posters) == len(expected) and set(posters["anilist_id"]) == expected
    with_files = (
        set(pd.read_csv(posters_dir / "labels.csv")["anilist_id"].dropna().astype(int)) & expected
    )
    assert set(posters.loc[posters["status"] == "ok", "anilist_id"]) == with_files
    assert not checkpoint.exists()
    assert not list((data / "raw").glob(".*.tmp")) and not list(
        (data / "raw" / "posters").glob(".*.tmp")
    )
    assert f"{len(expected)} titles" in result.stdout


def test_status_of_an_unknown_id_without_a_broker_says_where_to_look(tmp_path):
    result = cli("--data-dir", str(tmp_path), "jobs", "status", "nope")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "no run 'nope'" in line and "'anigenre jobs list'" in line and "--broker" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--data-dir", "before", "scrape", "--years", "2020"], "before"),
        (["scrape", "--years", "2020", "--data-dir", "after"], "after"),
        (["dataset", "stats", "--data-dir", "nested"], "nested"),
        (["scrape", "--years", "2020"], None),
    ],
)
def test_data_dir_is_accepted_before_or_after_the_subcommand(argv, expected):
    from anigenre.jobs.cli import build_parser

    assert build_parser().parse_args(argv).data_dir == expected
