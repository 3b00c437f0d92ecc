"""The project's one error hierarchy.

Every error the project raises on purpose is an ``AnigenreError``. Callers decide
whether to try again by the branch, never by the message::

    AnigenreError
    ├── ConfigError            bad settings, flags or arguments; fix them and rerun
    ├── RetryableError         the same call may succeed later
    │   ├── RateLimited        HTTP 429; carries ``retry_after`` seconds
    │   ├── ServerError        HTTP 5xx
    │   ├── NetworkError       timeout, refused or reset connection, cut-off body
    │   └── MalformedResponse  a 200 whose body is not the JSON we expect
    └── PermanentError         trying again will not help
        ├── ApiDisabled        HTTP 403: the API is switched off for us
        ├── GraphQLError       the server answered with GraphQL ``errors``
        ├── HTTPStatusError    any other unexpected HTTP status
        ├── NotFound           HTTP 404 (e.g. a poster the CDN does not have)
        ├── InvalidImage       bytes that are not an acceptable image; ``reason`` says why
        └── DataError          input data is wrong: unknown genre, missing table or column
"""

from __future__ import annotations


class AnigenreError(Exception):
    """Base of every error anigenre raises on purpose."""


class ConfigError(AnigenreError):
    """Settings, flags or arguments are wrong. The message says what to change."""


class RetryableError(AnigenreError):
    """A failure that may go away if the same call is made again later."""


class RateLimited(RetryableError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(RetryableError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NetworkError(RetryableError):
    """Timeouts, refused or reset connections, and bodies cut off mid-transfer."""


class MalformedResponse(RetryableError):
    """A success status with a body we cannot parse; proxies and overloaded servers do this."""


class PermanentError(AnigenreError):
    """Retrying the same call will fail the same way."""


class ApiDisabled(PermanentError):
    """AniList answers 403 when the API is disabled (for everyone, or for this client)."""


class GraphQLError(PermanentError):
    def __init__(self, message: str, errors: list | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class HTTPStatusError(PermanentError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotFound(PermanentError):
    """The resource does not exist (HTTP 404)."""


class InvalidImage(PermanentError):
    """Bytes that are not an image we accept. ``reason`` is a short, stable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DataError(PermanentError):
    """Input data that cannot be used as it is; the message says what is wrong with it."""
