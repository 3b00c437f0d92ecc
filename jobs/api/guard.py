"""What every request passes before a route sees it: the bearer token, the time limit and
the body limit. Plain ASGI middleware, so they cover /docs and /openapi.json and unmatched
paths too."""

from __future__ import annotations

import asyncio
import hmac
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz"})  # a load balancer's probe carries no token


async def _answer(send: Send, status: int, detail: str, headers=()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerToken:
    """Every path but :data:`OPEN_PATHS` needs ``Authorization: Bearer TOKEN``; 401
    otherwise. Compared in constant time; the token is never logged or echoed."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._token is None or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token):
            await self.app(scope, receive, send)
            return
        await _answer(
            send,
            401,
            "missing or wrong bearer token: send 'Authorization: Bearer $ANIGENRE_API_TOKEN'",
            [(b"www-authenticate", b"Bearer")],
        )


class TimeLimit:
    """A request not answered within ``seconds`` is 504. Work already handed to a thread
    (a prediction) runs on to its end; its answer is dropped."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracked), self.seconds)
        except TimeoutError:
            if started:
                raise  # half an answer: the connection is closed, nothing else can be said
            await _answer(send, 504, f"not answered within {self.seconds:g} s")


class BodyLimit:
    """A request body over ``limit`` bytes is 413: up front when its ``Content-Length``
    says so, else (chunked) as soon as that many bytes have come, without reading more.
    In place of FastAPI's ``max_body_size``, whose declared-length answer is plain text,
    not the ``{"detail"}`` of every other error."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _answer(send, 413, self._detail(f"is {int(declared)} bytes"))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # Raised in the route's body read: FastAPI answers it as {"detail"}.
                raise HTTPException(413, self._detail("went past that"))
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except HTTPException as exc:  # read outside a route (none now): answered here
            if started or exc.status_code != 413:
                raise
            await _answer(send, 413, exc.detail)

    def _detail(self, what: str) -> str:
        return (
            f"the request body {what}; this server takes at most {self.limit} bytes "
            "(ANIGENRE_API_MAX_BODY_BYTES)"
        )
