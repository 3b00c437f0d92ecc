"""moto's S3 server in this process, counting the HTTP requests it answers.

What an S3 bill and an S3 rate limit count is requests, so that is what the scale checks
count: every request any client makes (pyarrow's here) passes through ``counts``. Objects
can also be put straight into moto's backend, so ten thousand recorded runs are seeded
in seconds without ten thousand PUTs being counted or waited for.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter

from anigenre.core.storage import S3Options
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import s3_backends
from werkzeug.serving import make_server

from tests.procs import free_port
from tests.s3 import aws_env

_buckets = itertools.count()


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args) -> None:  # one line per request would drown the output
        pass


class CountingS3:
    def __init__(self) -> None:
        self.port = free_port()
        self.counts: Counter = Counter()  # by HTTP method
        self._lock = threading.Lock()
        self._server = None

    @property
    def env(self) -> dict[str, str]:
        return aws_env(f"http://127.0.0.1:{self.port}")

    @property
    def options(self) -> S3Options:
        return S3Options.from_env(self.env)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def start(self) -> CountingS3:
        app = DomainDispatcherApplication(create_backend_app)

        def counted(environ, start_response):
            with self._lock:
                self.counts[environ["REQUEST_METHOD"]] += 1
            return app(environ, start_response)

        self._server = make_server(
            "127.0.0.1", self.port, counted, threaded=True, request_handler=_QuietHandler
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def _backend(self):
        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def new_bucket(self) -> str:
        name = f"anigenre-scale-{next(_buckets)}"
        self._backend().create_bucket(name, "us-east-1")
        return name

    def put_into(self, bucket: str):
        """A ``Put`` (tests.run_records) that writes straight into the bucket."""
        backend = self._backend()

        def put(key: str, data: bytes) -> None:
            backend.put_object(bucket, key, data)

        return put
