"""docker-compose.yml cannot run here, so it is checked by construction: every service's
command must be a real entry point of this project, and its settings must load."""

from __future__ import annotations

import tomllib

import yaml
from celery.schedules import crontab

from config import load_settings
from jobs.cli import build_parser
from jobs.queue.app import QUEUES, create_app
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CELERY_SUBCOMMANDS = {"worker", "beat", "flower", "inspect"}


def _services():
    return COMPOSE["services"]


def test_redis_has_persistence_and_a_healthcheck():
    redis = _services()["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert "healthcheck" in redis and redis["volumes"]


def test_every_command_is_a_real_entry_point():
    app = create_app(load_settings(env={}))
    routed = {r["queue"] for r in app.conf.task_routes.values()}
    assert routed == set(QUEUES)
    for name, service in _services().items():
        if name == "redis":
            continue
        cmd = service["command"]
        if cmd[0] == "anigenre":
            build_parser().parse_args(cmd[1:])  # exits non-zero on an unknown command
            continue
        assert cmd[:3] == ["celery", "-A", "jobs.queue.worker"], name
        assert cmd[3] in CELERY_SUBCOMMANDS, name
        if cmd[3] == "worker":
            queues = cmd[cmd.index("-Q") + 1].split(",")
            assert set(queues) <= set(QUEUES), (name, queues)
        health = service.get("healthcheck", {}).get("test", [])
        if "celery" in health:
            assert health[health.index("celery") + 1 : health.index("celery") + 3] == [
                "-A",
                "jobs.queue.worker",
            ]


def test_each_queue_has_a_worker_and_there_is_one_beat():
    served = set()
    beats = 0
    for service in _services().values():
        cmd = service.get("command", [])
        if cmd[3:4] == ["worker"]:
            served |= set(cmd[cmd.index("-Q") + 1].split(","))
        beats += cmd[3:4] == ["beat"]
    assert served == set(QUEUES) and beats == 1


def test_service_settings_are_valid_and_flower_is_installable():
    for name, service in _services().items():
        env = service.get("environment") or {}
        if any(k.startswith("ANIGENRE_") for k in env):
            settings = load_settings(env={k: str(v) for k, v in env.items()})
            assert settings.broker_url.startswith("redis://redis:"), name
            assert "data" in [v.split(":")[0] for v in service["volumes"]], name
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("flower") for d in extras["monitor"])
    assert "'.[monitor]'" in (ROOT / "Dockerfile").read_text()


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


def test_beat_process_starts_with_the_schedule(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from tests.procs import RedisServer

    redis_server = RedisServer(tmp_path / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    env["ANIGENRE_BROKER_URL"] = redis_server.url
    env["ANIGENRE_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "beat.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "jobs.queue.worker",
                "beat",
                "--schedule",
                str(tmp_path / "schedule"),
                "--loglevel",
                "DEBUG",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "beat: Waking up" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            redis_server.kill()
    assert "incremental-scrape jobs.tasks.scrape(" in log.read_text()
    assert "'incremental': True" in log.read_text()
