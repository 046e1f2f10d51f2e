"""Errors of the policy service, each with the HTTP status it answers with.

They subclass :class:`app.errors.RaytradeError`, so the CLI reports a load failure as a clear
one-line error; the HTTP layer (:mod:`serve.api`) turns them into JSON answers.
"""

from __future__ import annotations

from app.errors import ModelLoadError, RaytradeError

__all__ = ["ModelLoadError", "RequestError", "RequestTimeoutError", "ServeError", "SessionConflictError",
           "SessionLostError", "WorkBudgetError"]


class ServeError(RaytradeError):
    """Base class of the service's errors (HTTP 500 unless a subclass says otherwise)."""

    status_code = 500


class RequestTimeoutError(ServeError):
    """The request's deadline passed while it waited for a worker (HTTP 504, like the timeout
    the HTTP layer raises itself: whichever notices first, the client gets the same answer)."""

    status_code = 504


class RequestError(ServeError):
    """The request is well formed JSON but cannot be served as is (HTTP 422).

    ``loc`` points at the offending field as pydantic does (``("body", "symbols", 0, "bars")``).
    """

    status_code = 422

    def __init__(self, message: str, loc: tuple[str | int, ...] = ("body",)) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def detail(self) -> list[dict]:
        """The FastAPI-style ``detail`` list of a 422 answer."""
        return [{"loc": list(self.loc), "msg": self.message, "type": "value_error"}]


class SessionConflictError(RequestError):
    """A recurrent session was sent bars older than the last bar it has seen (HTTP 409)."""

    status_code = 409


class SessionLostError(SessionConflictError):
    """A session's state was evicted (its key's quota) or expired: never restarted silently (409);
    the client resends with ``reset_session: true``."""


class WorkBudgetError(RequestError):
    """The request asks for more work than one request may (symbols x bars x replay steps): 413
    with the limit in the message."""

    status_code = 413
