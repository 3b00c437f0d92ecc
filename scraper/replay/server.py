"""The HTTP side of the replay server: GraphQL on POST /, covers, and an admin API.

Endpoints:
  POST /                       GraphQL Page/media query (answered from ``variables``)
  GET  /covers/<size>/<id>.<ext>  the real poster for ``id``, or 404
  GET  /_admin/stats           counters as JSON (requests, 429s served, early retries, faults)
  POST /_admin/bump            {"ids": [...]} sets those titles' updatedAt to now
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from anigenre.core.errors import GraphQLError
from anigenre.scraper.replay.catalog import Catalog
from anigenre.scraper.replay.faults import FaultPlan
from anigenre.scraper.replay.limits import TOO_MANY, WindowLimiter

_COVER = re.compile(r"^/covers/(extraLarge|large)/(\d+)\.[A-Za-z0-9]+$")
_CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


class ReplayServer:
    def __init__(
        self,
        catalog: Catalog,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limiter: WindowLimiter | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.catalog = catalog
        self.limiter = limiter
        self.faults = faults or FaultPlan()
        self.counts = {"graphql": 0, "covers": 0}
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def stats(self) -> dict:
        with self._lock:
            counts = dict(self.counts)
        return {
            "requests": counts,
            "rate_limited": self.limiter.rejected if self.limiter else 0,
            "early_retries": self.limiter.early_retries if self.limiter else 0,
            "faults": dict(self.faults.injected),
        }

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1


def _handler_for(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real API offers

        def log_message(self, *args) -> None:  # quiet: tests and the demo read stats instead
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_admin/bump":
                return self._bump(body)
            if self.path not in ("/", "/graphql"):
                return self._json(404, {"errors": [{"message": "Not Found.", "status": 404}]})
            server.count("graphql")
            if server.limiter is not None:
                decision = server.limiter.check()
                if not decision.allowed:
                    return self._json(429, TOO_MANY, decision.headers)
                headers = decision.headers
            else:
                headers = {}
            fault, arg = server.faults.draw(("403", "burst", "5xx", "slow", "malformed"))
            if fault == "slow":
                time.sleep(arg)
            elif fault == "5xx":
                return self._json(503, {"errors": [{"message": "Service Unavailable"}]}, headers)
            elif fault == "403":
                return self._json(403, {"errors": [{"message": "API disabled"}]}, headers)
            elif fault == "malformed":
                return self._send(
                    200, b'{"data": {"Page": {"pageInfo": ', "application/json", headers
                )
            try:
                request = json.loads(body)
                query = request.get("query") or ""
                if "Page" not in query or "media" not in query:
                    raise GraphQLError("only the Page/media query is replayed")
                data = server.catalog.page(request.get("variables") or {}, server.url)
            except (ValueError, AttributeError, TypeError) as exc:
                return self._json(400, {"data": None, "errors": [{"message": str(exc)}]}, headers)
            except GraphQLError as exc:
                return self._json(400, {"data": None, "errors": [{"message": str(exc)}]}, headers)
            return self._json(200, {"data": data}, headers)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/_admin/stats":
                return self._json(200, server.stats())
            match = _COVER.match(self.path)
            if not match:
                return self._send(404, b"Not Found", "text/plain")
            server.count("covers")
            anilist_id = int(match.group(2))
            fault, arg = server.faults.draw(
                ("burst", "5xx", "slow", "truncate", "html", "429"), anilist_id
            )
            if fault == "429":
                wait = f"{arg or 1.0:g}"
                return self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": wait})
            if fault == "slow":
                time.sleep(arg)
            elif fault == "5xx":
                return self._send(503, b"Service Unavailable", "text/plain")
            poster = server.catalog.posters.get(anilist_id)
            if poster is None or fault == "404":
                return self._send(404, b"Not Found", "text/plain")
            data = poster.read_bytes()
            ctype = _CONTENT_TYPES.get(poster.suffix.lower(), "application/octet-stream")
            if fault == "html":
                return self._send(200, b"<!DOCTYPE html><html><body>Error</body></html>", ctype)
            if fault == "truncate" and anilist_id in server.faults.targeted:
                # A file that is itself cut short: the transfer is complete, the image is not.
                return self._send(200, data[: len(data) // 2], ctype)
            if fault == "truncate":
                return self._send_cut(data, ctype)
            return self._send(200, data, ctype)

        def _bump(self, body: bytes) -> None:
            ids = json.loads(body or b"{}").get("ids") or []
            now = int(time.time())
            try:
                server.catalog.bump([int(i) for i in ids], now)
            except KeyError as exc:
                return self._json(404, {"error": f"unknown id {exc}"})
            return self._json(200, {"bumped": ids, "updatedAt": now})

        def _json(self, status: int, payload, headers: dict | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", headers)

        def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _send_cut(self, data: bytes, ctype: str) -> None:
            """Promise the whole body, send half, hang up: a connection dropped mid-transfer."""
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

    return Handler
