"""A real S3-compatible server on loopback: moto's standalone server, in its own process.

Tests get the AWS variables a user would set (``S3Server.env``) and a fresh bucket each,
so nothing leaks between tests while the server itself is started once per session.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs
from anigenre.core.storage import S3Options, Store, open_store

from tests.procs import free_port

_buckets = itertools.count()


def aws_env(endpoint: str) -> dict[str, str]:
    """The standard AWS variables, as a user of MinIO or R2 would set them."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }


class S3Server:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return aws_env(self.endpoint)

    @property
    def options(self) -> S3Options:
        return S3Options.from_env(self.env)

    def start(self) -> S3Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1)  # noqa: S310
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto server exited at start") from None
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def new_bucket(self, prefix: str = "") -> Store:
        """A new, empty bucket; the Store is rooted at ``s3://bucket/prefix``."""
        name = f"anigenre-test-{next(_buckets)}"
        # Creating buckets is an admin's job, not anigenre's: only this helper may.
        admin = pafs.S3FileSystem(
            access_key="testing",
            secret_key="testing",  # noqa: S106 (moto accepts any key)
            region="us-east-1",
            endpoint_override=f"127.0.0.1:{self.port}",
            scheme="http",
            allow_bucket_creation=True,
        )
        admin.create_dir(name)
        store = open_store(f"s3://{name}", self.options)
        return store.child(prefix) if prefix else store


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()
