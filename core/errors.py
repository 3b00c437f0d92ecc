"""The project's one error hierarchy.

Every error the project raises on purpose is an ``AnigenreError``. Callers decide
whether to try again by the branch, never by the message::

    AnigenreError
    ├── ConfigError            bad settings, flags or arguments; fix them and rerun
    ├── RetryableError         the same call may succeed later
    │   ├── RateLimited        HTTP 429; carries ``retry_after`` seconds
    │   ├── ServerError        HTTP 5xx
    │   ├── NetworkError       timeout, refused or reset connection, cut-off body
    │   │   └── BrokerUnreachable  the broker did not answer its one connection check
    │   └── MalformedResponse  a 200 whose body is not the JSON we expect
    └── PermanentError         trying again will not help
        ├── ApiDisabled        HTTP 403: the API is switched off for us
        ├── GraphQLError       the server answered with GraphQL ``errors``
        ├── HTTPStatusError    any other unexpected HTTP status
        ├── NotFound           HTTP 404 (e.g. a poster the CDN does not have)
        ├── InvalidImage       bytes that are not an acceptable image; ``reason`` says why
        ├── DataError          input data is wrong: unknown genre, missing table or column,
        │                      a damaged model or run folder
        └── StorageError       a file or folder cannot be written: disk full, read-only,
                               a file where a folder must be; ``path`` names it

An ``OSError`` from writing becomes a ``StorageError`` where the write happens
(``StorageError.from_os``), so the one line a user sees names the path and what to do.
"""

from __future__ import annotations

import errno
from pathlib import Path


class AnigenreError(Exception):
    """Base of every error anigenre raises on purpose."""


class ConfigError(AnigenreError):
    """Settings, flags or arguments are wrong. The message says what to change."""


class RetryableError(AnigenreError):
    """A failure that may go away if the same call is made again later."""

    #: What a front end tells the user once its own retries have given up.
    advice = "retries ran out, run the same command again to resume"


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


class BrokerUnreachable(NetworkError):
    """The broker did not answer. Checked once, before anything is planned, so there
    were no retries and there is nothing to resume: a worker or a submit just starts."""

    advice = "start Redis there or pass --broker with one that runs, then run the command again"


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


_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere "
    "(--out, --data-dir), then run the same command again",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere "
    "(--out, --data-dir), then run the same command again",
    errno.EROFS: "the file system is read-only; mount it writable or write elsewhere "
    "(--out, --data-dir)",
    errno.EACCES: "permission denied; make it writable for this user or write elsewhere "
    "(--out, --data-dir)",
    errno.EPERM: "operation not permitted; make it writable for this user or write elsewhere "
    "(--out, --data-dir)",
    errno.EISDIR: "a folder stands where a file must be; move it aside",
    errno.EEXIST: "something already stands there; move it aside",
}


class StorageError(PermanentError):
    """A file or folder cannot be written (or read) for reasons outside the data: a full
    disk, a read-only mount, a file where a folder must be. ``path`` is the one involved."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def from_os(
        cls, exc: OSError, path: str | Path | None = None, action: str = "write"
    ) -> StorageError:
        """The one-line error for ``exc`` met while trying to ``action`` ``path`` (default:
        the path the OS names). Mapped by errno, so the advice fits the cause, not the call."""
        where = str(path if path is not None else (exc.filename or "")) or None
        if exc.errno in (errno.ENOTDIR, errno.EEXIST) and where:
            blocker = _file_in_the_way(Path(where))
            if blocker is not None:
                return cls(
                    f"cannot {action} {where}: {blocker} is a file, not a folder; "
                    "move it aside or choose another folder",
                    str(blocker),
                )
        advice = _ADVICE.get(exc.errno) or (exc.strerror or str(exc))
        return cls(f"cannot {action} {where}: {advice}" if where else advice, where)


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` (or itself) that exists and is not a folder."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists() and not candidate.is_dir():
                return candidate
        except OSError:
            return None
    return None
