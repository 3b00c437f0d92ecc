"""Issue 18's rough edges at the command line: beat's schedule in one line, an interrupted
or queued run that says so, one exit status for an id that names nothing, a mistyped
option with a suggestion, the README's paths, and the two make targets' prerequisites."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.procs import ROOT, own_redis, run_cli
from tests.synthetic import poster_folder, trained_tiny_model


def _env(**extra) -> dict:
    """The user's environment: no ANIGENRE_* set by whoever runs the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "TF_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    return trained_tiny_model(tmp_path_factory.mktemp("rough-data"), shared_dir)


# --- 18: a mistyped option -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "meant", "help_of"),
    [
        (["predict", "x.png", "--top-kk", "3"], "--top-k", "anigenre predict"),
        (["jobs", "status", "r1", "--jsn"], "--json", "anigenre jobs status"),
        (["predict", "x.png", "--data-dri", "d"], "--data-dir", "anigenre predict"),
        (["jobs", "submit", "predict", "x", "--chunk-sise", "4"], "--chunk-size", None),
    ],
)
def test_an_unknown_option_gets_the_nearest_one_and_its_subcommands_help(argv, meant, help_of):
    result = run_cli(*argv, env=_env())
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"did you mean '{meant}'?" in line, line
    help_of = help_of or "anigenre jobs submit predict"
    assert line.endswith(f"(see '{help_of} --help')"), line


def test_an_unknown_option_with_no_near_name_still_names_the_subcommands_help():
    result = run_cli("predict", "x.png", "--frobnicate", env=_env())
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "unrecognized arguments: --frobnicate" in line and "did you mean" not in line
    assert line.endswith("(see 'anigenre predict --help')"), line


# --- 18: an id that names no run or task -----------------------------------------------

ID_COMMANDS = [["report", "nope"], ["jobs", "status", "nope"], ["jobs", "status", "nope",
               "--json"], ["jobs", "wait", "nope"], ["jobs", "resume", "nope"]]  # fmt: skip


def _one_error_line(result) -> str:
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("anigenre: error: no run"), line
    assert "Traceback" not in result.stdout + result.stderr
    return line


@pytest.mark.parametrize("argv", ID_COMMANDS, ids=" ".join)
def test_an_unknown_run_exits_2_from_every_command_without_a_broker(tmp_path, argv):
    result = run_cli(*argv, env=_env(ANIGENRE_DATA_DIR=tmp_path / "data"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "'nope'" in _one_error_line(result)


def test_an_unknown_run_or_task_exits_2_from_every_command_with_a_broker(tmp_path):
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=tmp_path / "data", ANIGENRE_BROKER_URL=url)
        for argv in ID_COMMANDS:
            result = run_cli(*argv, env=env)
            assert result.returncode == 2, (argv, result.stdout, result.stderr)
            assert "'nope'" in _one_error_line(result), argv


def test_the_readme_states_the_rule_for_an_unknown_id():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "an id that names no run or task exits 2" in readme


# --- 8: beat's schedule file -----------------------------------------------------------


@pytest.mark.parametrize("where", ["missing-folder", "a-folder", "read-only"])
def test_beat_with_a_schedule_it_cannot_write_is_one_line(tmp_path, where):
    schedule = {
        "missing-folder": tmp_path / "nonexistent" / "dir" / "sched",
        "a-folder": tmp_path,
        "read-only": tmp_path / "ro" / "sched",
    }[where]
    if where == "read-only":
        schedule.parent.mkdir()
        schedule.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
        if os.access(schedule.parent, os.W_OK):
            pytest.skip("root writes into a read-only folder")
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=tmp_path / "data", ANIGENRE_BROKER_URL=url)
        result = run_cli("beat", "--schedule", str(schedule), env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    (line,) = (result.stdout + result.stderr).strip().splitlines()
    assert line.startswith("anigenre: error: ") and "--schedule" in line, line
    assert str(schedule.parent if where != "a-folder" else schedule) in line, line


# --- 17: an interrupted run, and a queued one with no worker ---------------------------


def test_status_right_after_ctrl_c_says_interrupted_with_no_eta(trained, tmp_path):
    settings, _ = trained
    folder = poster_folder(tmp_path / "in", 600, 5000)
    out = tmp_path / "out"
    env = _env(ANIGENRE_DATA_DIR=settings.data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "anigenre.jobs.cli", "predict", str(folder), "--out", str(out),
         "--chunk-size", "2", "--engine", "keras"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default action, even where the suite runs with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # Some chunks written, most not: the run has a rate, so a live one would have an ETA.
        while len(list((out / "predictions").glob("run_id=*/part-*.parquet"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    run_id = stdout.split()[1].rstrip(":")
    resume = f"anigenre --data-dir {shlex.quote(str(settings.data_dir))} jobs resume {run_id}"
    assert f"anigenre: interrupted; '{resume}' finishes this run" in stderr.splitlines()

    status = run_cli("jobs", "status", run_id, env=env)
    assert status.returncode == 0, status.stderr
    line = status.stdout.strip()
    assert "interrupted: " in line and "ETA" not in line, line
    assert f"'{resume}' finishes it" in line, line
    view = run_cli("jobs", "status", run_id, "--json", env=env)
    assert '"state": "interrupted"' in view.stdout and '"eta_s": null' in view.stdout


def test_status_of_a_queued_run_with_no_worker_says_no_worker_consumes_the_queue(trained, tmp_path):
    settings, _ = trained
    folder = poster_folder(tmp_path / "in", 3, 6000)
    with own_redis(tmp_path / "redis") as (url, _):
        env = _env(ANIGENRE_DATA_DIR=settings.data_dir, ANIGENRE_BROKER_URL=url)
        submitted = run_cli("jobs", "submit", "predict", str(folder), env=env)
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.split()[0]
        status = run_cli("jobs", "status", run_id, env=env)
    assert status.returncode == 0, status.stderr
    line = status.stdout.strip()
    assert "0/1 chunks" in line and "queued: no chunk taken by a worker yet" in line, line
    start = f"worker -Q predict --broker {url}"
    assert "no worker is consuming 'predict'; start one with: " in line and start in line, line
    assert "running" not in line and "ETA" not in line


# --- 19: where a run writes, in the runs list and in the README ------------------------


def test_jobs_list_names_each_runs_output_dir_and_model(trained, tmp_path):
    settings, model_id = trained
    out = tmp_path / "elsewhere"
    env = _env(ANIGENRE_DATA_DIR=settings.data_dir)
    folder = poster_folder(tmp_path / "in", 2, 7000)
    predicted = run_cli("predict", str(folder), "--out", str(out), env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    run_id = predicted.stdout.split()[1].rstrip(":")
    listed = run_cli("jobs", "list", env=env)
    (line,) = [x for x in listed.stdout.splitlines() if x.startswith(f"run {run_id}:")]
    assert line.endswith(f"(model {model_id}, out {out})"), line
    as_json = run_cli("jobs", "list", "--json", env=env)
    (entry,) = [r for r in json.loads(as_json.stdout)["runs"] if r["run_id"] == run_id]
    assert (entry["out_dir"], entry["model_id"]) == (str(out), model_id)


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"### {title}\n")
    return text[start : text.index("\n## ", start)]


def test_the_readme_reads_the_folder_its_predict_command_writes(trained, tmp_path):
    """The reading section's blocks read ``out/predictions``: the section names the
    ``predict`` that writes it, and where ``predict`` writes without ``--out``."""
    settings, _ = trained
    section = _readme_section("Reading the predictions")
    assert "writes `data/predictions/`" in section, "predict's default output (the data dir)"
    (command,) = re.findall(r"^(anigenre predict [^#\n]*?)\s*(?:#.*)?$", section, re.M)
    argv = shlex.split(command)[1:]
    poster_folder(tmp_path / argv[1], 3, 7100)
    predicted = run_cli(*argv, env=_env(ANIGENRE_DATA_DIR=settings.data_dir), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    block = re.search(r"<!-- readers: [^\n]*-->\n```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(block, scope)  # noqa: S102 - the README, verbatim
    finally:
        os.chdir(here)
    assert len(scope["rows"]) == len(scope["fetched"]) == 3


# --- 21: what the two make targets need from the machine -------------------------------

PREREQS = ROOT / "scripts" / "prereqs.sh"
APT_LINE = re.compile(r"^missing: .+; install it: (sudo )?apt-get install -y [a-z0-9.-]+$")
STUB = "#!/bin/sh\nexit 0\n"  # a tool that is there (the checks only look for it, or run it)


@pytest.fixture
def public_dir():
    """A folder an ordinary user can read (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="prereqs-"))
    folder.chmod(0o755)  # noqa: S103 - read and searched by the user 'nobody' below
    yield folder
    shutil.rmtree(folder)


def _bin(folder: Path, **tools: str | Path) -> Path:
    """A PATH folder holding only ``tools``: name -> a real binary (linked) or a script."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, what in tools.items():
        if isinstance(what, Path):
            (folder / name).symlink_to(what)
        else:
            (folder / name).write_text(what)
            (folder / name).chmod(0o755)  # noqa: S103 - an executable
    return folder


def _which(name: str) -> Path:
    found = shutil.which(name)
    assert found, f"{name} is needed to run this test"
    return Path(found)


def _as_a_user(argv: list[str]) -> list[str]:
    """``argv`` run by an ordinary user: as root, through setpriv as nobody."""
    if os.geteuid() != 0:
        return argv
    return [str(_which("setpriv")), "--reuid=65534", "--regid=65534", "--clear-groups", *argv]


def _prereqs(target: str, path: Path, shared: Path, user: bool) -> subprocess.CompletedProcess:
    argv = ["/bin/bash", str(PREREQS), target]
    env = {"PATH": str(path), "ANIGENRE_SHARED_DIR": str(shared)}
    return subprocess.run(
        _as_a_user(argv) if user else argv, cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_prereqs_name_each_missing_tool_and_its_install_command(public_dir, shared_dir):
    empty = _bin(public_dir / "empty")
    result = _prereqs("test", empty, shared_dir, user=True)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split()[1] for line in lines] == ["make", "python3", "redis-server", "chromium"]
    assert all(APT_LINE.match(line) for line in lines), lines
    assert all("sudo apt-get" in line for line in lines), "not root: with sudo"
    demo = _prereqs("demo", empty, shared_dir, user=True)  # no Redis, no browser
    assert [line.split()[1] for line in demo.stderr.splitlines()] == ["make", "python3"]


def test_prereqs_are_silent_when_everything_is_there(tmp_path, shared_dir):
    names = ("make", "redis-server", "chromium")
    tools = _bin(tmp_path / "bin", python3=Path(sys.executable), **dict.fromkeys(names, STUB))
    for target in ("demo", "test"):
        result = _prereqs(target, tools, shared_dir, user=False)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), target


def test_prereqs_refuse_a_python_older_than_3_11(tmp_path, shared_dir):
    old = '#!/bin/sh\ncase "$2" in *version_info*) exit 1;; esac\nexit 0\n'
    tools = _bin(tmp_path / "bin", make=STUB, python3=old)
    result = _prereqs("demo", tools, shared_dir, user=False)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("missing: Python >= 3.11") and "PYTHON=" in line, line


def test_prereqs_say_where_the_fixtures_go(tmp_path):
    tools = _bin(tmp_path / "bin", make=STUB, python3=Path(sys.executable))
    result = _prereqs("demo", tools, tmp_path / "nowhere", user=False)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert f"{tmp_path / 'nowhere'}/data" in line and "ANIGENRE_SHARED_DIR" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_prereqs_install_what_is_missing_as_root_with_apt_get(tmp_path, shared_dir):
    """A stand-in apt-get records what it is asked and 'installs' stubs: nothing real is
    installed, and the script's own check afterwards finds them."""
    folder = tmp_path / "bin"
    log = tmp_path / "apt.log"
    apt = (
        f'#!/bin/bash\necho "$*" >> {log}\n'
        'if [ "$1" = install ]; then for p in "$@"; do case "$p" in -*|install) ;; *)\n'
        f'printf "#!/bin/sh\\nexit 0\\n" > {folder}/$p; /bin/chmod +x {folder}/$p;;\n'
        "esac; done; fi\n"
    )
    tools = _bin(folder, make=STUB, python3=Path(sys.executable), **{"apt-get": apt})
    result = _prereqs("test", tools, shared_dir, user=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "installing redis-server chromium (apt-get, as root)\n"
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq redis-server chromium"]


def test_make_test_stops_before_anything_else_when_a_tool_is_missing(public_dir, shared_dir):
    """No venv, no lint, no pytest: one line per missing tool, and make fails."""
    tools = _bin(
        public_dir / "bin",
        make=_which("make"),
        bash=_which("bash"),
        sh=_which("sh"),
        python3=STUB,
    )
    env = {"PATH": str(tools), "ANIGENRE_SHARED_DIR": str(shared_dir)}
    result = subprocess.run(
        _as_a_user([str(tools / "make"), "test", f"VENV={public_dir / 'venv'}"]),
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    missing = [line for line in result.stderr.splitlines() if line.startswith("missing: ")]
    assert [line.split()[1] for line in missing] == ["redis-server", "chromium"], result.stderr
    assert not (public_dir / "venv").exists() and "ruff" not in result.stdout
