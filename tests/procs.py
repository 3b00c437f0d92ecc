"""Real processes for integration tests: redis-server on a free port, celery workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from anigenre.jobs.queue.app import worker_argv

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Our own redis-server, with an append-only file so a restart keeps the queue."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class Worker:
    """``anigenre worker`` (``worker_argv``) in its own process group, so SIGKILL takes
    the parent and its pool children together, as a crashed host would."""

    def __init__(self, name: str, env: dict, log: Path, queues: str = "predict") -> None:
        self.name, self.env, self.log, self.queues = name, env, log, queues
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            worker_argv(self.queues, self.name),
            cwd=ROOT,
            env=self.env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


def run_cli(
    *args: str, env: dict, timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """``anigenre ARGS`` as a user runs it: a fresh process, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "anigenre.jobs.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def own_redis(workdir: Path) -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server of the test's own on a free port: the machine's Redis (other
    people's data) is never flushed or written."""
    server = RedisServer(workdir).start()
    try:
        yield server.url, redis.Redis.from_url(server.url)
    finally:
        server.kill()
