"""docker-compose.yml and the Dockerfile cannot run here, so they are checked by
construction: every service's command must be a real entry point of this project, its
settings must load, and the shell snippets the containers run (healthchecks, the bucket
one-shot, the Dockerfile's dependency list) are run here as the containers would."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib

import pytest
import yaml
from anigenre.config import Settings, load_settings
from anigenre.jobs.cli import build_parser
from anigenre.jobs.queue.app import QUEUES, create_app
from celery.schedules import crontab

from tests.conftest import ROOT
from tests.procs import own_redis

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
IMAGE = "anigenre:latest"
CELERY_SUBCOMMANDS = {"worker", "beat", "flower", "inspect"}
# docs/benchmarks.md: ~60 posters/s through workers on the 2-core machine, and the
# slowest measured worker cold start (Keras, start to first chunk written) 11.3 s.
POSTERS_PER_S_TWO_CORES = 60.0
COLD_START_S = 11.3

_VAR = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _services() -> dict:
    return COMPOSE["services"]


def _ours() -> dict:
    return {n: s for n, s in _services().items() if s.get("image") == IMAGE}


def interpolate(value: str, env: dict) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``, then ``$$``."""

    def one(match: re.Match) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op == "?":
            raise LookupError(arg or name)
        return arg if op == "-" else ""

    return _VAR.sub(one, value).replace("$$", "$")


def container_env(service: dict, env: dict | None = None) -> dict[str, str]:
    """What a container's environment holds: a key without a value passes the caller's
    (the shell's or .env's) through, and is absent when that is unset."""
    env = env or {}
    out = {}
    for key, value in (service.get("environment") or {}).items():
        if value is None:
            if env.get(key):
                out[key] = env[key]
        else:
            out[key] = interpolate(str(value), env)
    return out


def argv(service: dict) -> list[str]:
    return list(service.get("entrypoint") or []) + list(service.get("command") or [])


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", duration))


def _workers() -> dict:
    return {n: s for n, s in _ours().items() if argv(s)[:2] == ["anigenre", "worker"]}


def test_redis_has_persistence_and_a_healthcheck():
    redis = _services()["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert "healthcheck" in redis and redis["volumes"]
    assert "ports" not in redis  # only the stack reaches it


def test_every_command_is_a_real_entry_point():
    app = create_app(load_settings(env={}))
    routed = {r["queue"] for r in app.conf.task_routes.values()}
    assert routed == set(QUEUES)
    assert set(_ours()) >= {"worker-predict", "worker-scrape-train", "beat", "flower", "anigenre"}
    for name, service in _ours().items():
        cmd = argv(service)
        if cmd[0] == "anigenre":
            try:
                build_parser().parse_args(cmd[1:])
            except SystemExit as exc:  # argparse: 0 after --help, 2 for an unknown command
                assert exc.code == 0, name
            continue
        assert cmd[:3] == ["celery", "-A", "anigenre.jobs.queue.worker"], name
        assert cmd[3] in CELERY_SUBCOMMANDS, name


def test_each_queue_has_a_worker_and_there_is_one_beat():
    served = set()
    for service in _workers().values():
        served |= set(build_parser().parse_args(argv(service)[1:]).queues.split(","))
    beats = [n for n, s in _ours().items() if "beat" in argv(s)[:4]]
    assert served == set(QUEUES) and beats == ["beat"]


def test_service_settings_are_valid_and_flower_is_installable():
    secrets = {"FLOWER_BASIC_AUTH": "admin:secret"}
    for name, service in _ours().items():
        env = {
            k: v for k, v in container_env(service, secrets).items() if k.startswith("ANIGENRE_")
        }
        settings = load_settings(env=env)  # an unknown ANIGENRE_* name raises ConfigError
        assert settings.broker_url.startswith("redis://redis:"), name
        assert str(settings.data_dir) == "/data", name
        mounts = {v.rsplit(":", 1)[1]: v.rsplit(":", 1)[0] for v in service["volumes"]}
        assert mounts["/data"] == "data" and mounts["/cache"] == "cache", name
        assert env.get("ANIGENRE_CACHE_DIR") == "/cache", name
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("flower") for d in extras["monitor"])
    assert "ARG EXTRAS=monitor" in DOCKERFILE


def test_every_service_can_reach_the_inbox():
    assert "inbox" in COMPOSE["volumes"]
    for name, service in _ours().items():
        mounts = {v.rsplit(":", 1)[1]: v.rsplit(":", 1)[0] for v in service["volumes"]}
        # A named volume by default; INBOX_DIR=./inbox makes it a host folder.
        assert interpolate(mounts["/inbox"], {}) == "inbox", name
        assert interpolate(mounts["/inbox"], {"INBOX_DIR": "./inbox"}) == "./inbox", name
        assert container_env(service, {"FLOWER_BASIC_AUTH": "a:b"})["ANIGENRE_INBOX"] == "/inbox"


def test_worker_healthchecks_run_in_a_shell_and_name_their_own_worker():
    workers = _workers()
    assert set(workers) == {"worker-predict", "worker-scrape-train"}
    for name, service in workers.items():
        node = build_parser().parse_args(argv(service)[1:]).hostname
        prefix, host = node.split("@")
        assert host == "%h", name  # Celery's %h is the host name, $HOSTNAME in a container
        test = service["healthcheck"]["test"]
        # CMD would pass "$HOSTNAME" to celery as it is; only a shell expands it.
        assert test[0] == "CMD-SHELL" and len(test) == 2, name
        words = shlex.split(interpolate(test[1], {}))
        assert words[:5] == ["celery", "-A", "anigenre.jobs.queue.worker", "inspect", "ping"], name
        assert words[words.index("-d") + 1] == f"{prefix}@$HOSTNAME", name
        timeout = float(words[words.index("-t") + 1])
        assert timeout < _seconds(service["healthcheck"]["timeout"]), name


def test_stop_grace_period_outlasts_a_chunk_in_hand():
    defaults = Settings()
    predict = _services()["worker-predict"]
    concurrency = build_parser().parse_args(argv(predict)[1:]).concurrency
    # Each process gets its share of the machine's rate; the chunk it holds at SIGTERM
    # may be its first (model load) and the machine may be slower than ours.
    chunk_s = defaults.predict_chunk_size / (POSTERS_PER_S_TWO_CORES / concurrency)
    grace = _seconds(predict["stop_grace_period"])
    assert grace >= 10 * chunk_s + COLD_START_S, (grace, chunk_s)
    assert grace > 10  # Docker's default, which is what a missing key gets
    scrape_train = _seconds(_services()["worker-scrape-train"]["stop_grace_period"])
    assert scrape_train >= grace


def test_workers_send_task_events_for_flower():
    # `anigenre worker` passes -E itself; a celery command line has to say it.
    for name, service in _workers().items():
        cmd = argv(service)
        assert cmd[0] == "anigenre" or "-E" in cmd, name


def test_flower_needs_a_password_and_only_this_machine_reaches_it():
    flower = _services()["flower"]
    env = flower["environment"]
    assert (
        env["ANIGENRE_BROKER_URL"]
        == _services()["worker-predict"]["environment"]["ANIGENRE_BROKER_URL"]
    )  # the merged settings are still there
    with pytest.raises(LookupError):
        container_env(flower, {})  # Compose refuses to start the stack without it
    assert container_env(flower, {"FLOWER_BASIC_AUTH": "u:p"})["FLOWER_BASIC_AUTH"] == "u:p"
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_every_published_port_is_on_localhost_and_no_secret_is_committed():
    for name, service in _services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD|AUTH|ACCESS_KEY", key):
                # Passed through, or taken from the environment: never a literal.
                assert value is None or re.fullmatch(r"\$\{\w+(:[-?][^}]*)?\}", value), key


def test_the_s3_profile_runs_minio_and_makes_the_bucket():
    minio, bucket = _services()["minio"], _services()["minio-bucket"]
    assert minio["profiles"] == ["s3"] and bucket["profiles"] == ["s3"]
    assert "healthcheck" in minio
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    # MinIO's root pair is the pair the stack's S3 client uses.
    keys = {"AWS_ACCESS_KEY_ID": "anigenre", "AWS_SECRET_ACCESS_KEY": "s3cret-s3cret"}
    env = container_env(minio, keys)
    assert (env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]) == ("anigenre", "s3cret-s3cret")
    for service in _ours().values():
        assert {
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
        } <= set(service["environment"])
        assert "AWS_ENDPOINT_URL" not in container_env(service, {"FLOWER_BASIC_AUTH": "a:b"})


def _run_shell(service: dict, env: dict, tmp_path) -> subprocess.CompletedProcess:
    """The service's `sh -c SCRIPT`, as its container runs it, with a stand-in `mc` that
    records its arguments (the MinIO client is not installed here)."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    mc = tmp_path / "bin" / "mc"
    mc.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/mc.log\n')
    mc.chmod(0o755)
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    script = interpolate(service["command"][0], {})
    full = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **container_env(service, env)}
    return subprocess.run(["/bin/sh", "-c", script], env=full, capture_output=True, text=True)


def test_the_bucket_one_shot_creates_the_buckets_the_settings_name(tmp_path):
    bucket = _services()["minio-bucket"]
    keys = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    env = {**keys, "ANIGENRE_DATA_DIR": "s3://anigenre/data", "ANIGENRE_INBOX": "s3://drop/in"}
    assert _run_shell(bucket, env, tmp_path).returncode == 0
    log = (tmp_path / "mc.log").read_text().splitlines()
    assert log == [
        "alias set local http://minio:9000 k s",
        "mb --ignore-existing local/anigenre",
        "mb --ignore-existing local/drop",
    ]


def test_minio_refuses_to_start_without_credentials(tmp_path):
    result = _run_shell(_services()["minio"], {}, tmp_path)
    assert result.returncode == 1 and "AWS_SECRET_ACCESS_KEY" in result.stderr
    assert not (tmp_path / "mc.log").exists()


def test_the_cli_service_is_a_tool_not_a_daemon():
    cli = _services()["anigenre"]
    assert cli["profiles"] == ["tools"] and cli["restart"] == "no"
    assert cli["entrypoint"] == ["anigenre"]
    # `docker compose run --rm anigenre ARGS` replaces the command, keeps the entry point.
    build_parser().parse_args(["jobs", "submit", "predict", "/inbox"])


def _instructions() -> list[str]:
    joined = DOCKERFILE.replace("\\\n", "")
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def test_dockerfile_installs_dependencies_before_the_code_and_runs_unprivileged():
    lines = _instructions()
    deps = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    code = [
        i for i, line in enumerate(lines) if re.match(r"COPY (config|core|jobs|models)\b", line)
    ]
    copies_before = [line for line in lines[:deps] if line.startswith("COPY")]
    assert copies_before == ["COPY pyproject.toml ./"]
    assert code and min(code) > deps
    assert any(line.startswith("RUN pip install --no-deps .") for line in lines[max(code) :])
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] != "USER root"
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", ".env", "tests", "bench"} <= ignored
    assert "README.md" not in ignored and "pyproject.toml" not in ignored


def test_dockerfile_dependency_list_is_pyprojects(tmp_path):
    run = next(line for line in _instructions() if "tomllib" in line)
    command = run.removeprefix("RUN ").split(" > ")[0]
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "EXTRAS": "monitor"}
    out = subprocess.run(["sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["monitor"]
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:-1] == expected


def test_beat_schedules_the_incremental_scrape_from_settings():
    app = create_app(load_settings(env={"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": "15 3 * * 1"}))
    entry = app.conf.beat_schedule["incremental-scrape"]
    assert (
        entry["task"] == "jobs.tasks.scrape" and entry["kwargs"]["request"]["incremental"] is True
    )
    assert entry["schedule"] == crontab(minute="15", hour="3", day_of_week="1")
    assert (
        create_app(
            load_settings(env={"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": ""})
        ).conf.beat_schedule
        == {}
    )


def test_beat_ticks_the_inbox_only_when_one_is_set():
    assert "inbox" not in create_app(load_settings(env={})).conf.beat_schedule
    env = {"ANIGENRE_INBOX": "/srv/inbox", "ANIGENRE_INBOX_SCHEDULE": "5 */2 1 * *"}
    entry = create_app(load_settings(env=env)).conf.beat_schedule["inbox"]
    assert entry["task"] == "jobs.tasks.predict_inbox"
    assert entry["schedule"] == crontab(minute="5", hour="*/2", day_of_month="1")
    env["ANIGENRE_INBOX_SCHEDULE"] = "2"
    app = create_app(load_settings(env=env))
    entry = app.conf.beat_schedule["inbox"]
    assert entry["schedule"] == 2.0 and entry["options"] == {"expires": 2.0}
    assert app.conf.task_routes["jobs.tasks.predict_inbox"] == {"queue": "predict"}


def test_app_is_json_only_with_late_acks():
    conf = create_app(load_settings(env={})).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def _clean_env(tmp_path, broker: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env["ANIGENRE_BROKER_URL"] = broker
    env["ANIGENRE_DATA_DIR"] = str(tmp_path / "data")
    return env


def _start(cmd: list[str], env: dict, log, ready: str, timeout: float = 60):
    fh = open(log, "w")  # noqa: SIM115 - closed by the caller's _stop
    proc = subprocess.Popen(
        [sys.executable, "-m", "anigenre.jobs.cli", *cmd[1:]],
        cwd=ROOT,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while ready not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    return proc, fh


def _stop(proc, fh) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    fh.close()


def test_beat_service_starts_with_the_schedule_in_the_file_it_names(tmp_path):
    cmd = argv(_services()["beat"])
    schedule = cmd[cmd.index("--schedule") + 1]
    assert schedule.startswith("/data/")  # the local volume, whatever the data dir is
    with own_redis(tmp_path / "redis") as (url, _):
        here = tmp_path / "state" / "celerybeat-schedule"
        here.parent.mkdir()
        cmd[cmd.index("--schedule") + 1] = str(here)
        log = tmp_path / "beat.log"
        proc, fh = _start(
            [*cmd, "--loglevel", "DEBUG"], _clean_env(tmp_path, url), log, "beat: Waking up"
        )
        _stop(proc, fh)
    assert "incremental-scrape jobs.tasks.scrape(" in log.read_text()
    assert "'incremental': True" in log.read_text()
    assert list(here.parent.glob("celerybeat-schedule*"))  # shelve may add a suffix
    assert not (tmp_path / "data" / "celerybeat-schedule").exists()


def test_the_predict_healthcheck_passes_for_its_worker_and_only_for_it(tmp_path):
    service = _services()["worker-predict"]
    check = interpolate(service["healthcheck"]["test"][1], {})
    with own_redis(tmp_path / "redis") as (url, _):
        env = _clean_env(tmp_path, url)
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"  # celery, as in the image
        log = tmp_path / "worker.log"
        proc, fh = _start(argv(service), env, log, "ready.")
        try:
            # Docker sets HOSTNAME to the container's host name, which %h expands to. Both
            # run at once: a ping waits out its -t whoever answers.
            here, elsewhere = (
                subprocess.Popen(
                    ["/bin/sh", "-c", check],
                    cwd=ROOT,
                    env={**env, "HOSTNAME": host},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for host in (socket.gethostname(), "another-container")
            )
            here_out, _ = here.communicate(timeout=60)
            elsewhere.communicate(timeout=60)
        finally:
            _stop(proc, fh)
    assert here.returncode == 0, here_out
    assert "pong" in here_out
    assert elsewhere.returncode != 0
    assert "task events: ON" in log.read_text()  # what Flower needs to see tasks
