"""Recurrent state per session, per client (API key), with expiry (time to live) and a per-client
size bound (least recently used).

A session key is ``"<session_id>|<symbol>"`` (one recurrent state per symbol, as each env of a
backtest has its own); a portfolio model uses the session id alone. Each client (the name of the
API key that authenticated the request) has its own partition and quota: one client's burst of
new sessions evicts only its own least recently used ones, never another client's state.

Each entry remembers the last bar it stepped on and the state BEFORE that step, so:

* a newer bar advances the state (``step`` + 1);
* the same bar again is a retry: it recomputes from the state before that bar (idempotent);
* an older bar is a :class:`~serve.errors.SessionConflictError` (HTTP 409).

Lost state is never silent: an evicted or expired session leaves a tombstone (bounded like the
sessions), and its next request is a :class:`~serve.errors.SessionLostError` (409, with the
reason) until the client resends with ``reset`` (``reset_session: true``). A session the replica
does not know (new, lost with the replica, or lost before the tombstones it keeps) starts from
the initial state and says so (``state_reset: true`` in the answer).

Entries live in the replica's memory: with several replicas, route a session to one replica
(``x-session-id`` header, see :mod:`serve.deployment`) or use window replay.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serve.errors import SessionConflictError, SessionLostError


@dataclass
class SessionEntry:
    state: dict[str, Any]        # recurrent state after the last step (unbatched tensors)
    prev_state: dict[str, Any] | None  # state before the last step (None: the initial state)
    last_ts_ns: int
    step: int
    expires_at: float


@dataclass(frozen=True)
class SessionTicket:
    """What a step needs from the store: the state to start from (None: initial) and the step."""

    key: str
    state_in: dict[str, Any] | None
    step: int
    retry: bool
    exists: bool
    client: str = "default"


#: Lost sessions remembered per client, per session of its quota. A session lost longer ago than
#: that looks new: it starts from the initial state and its answer says ``state_reset: true``.
TOMBSTONES_PER_SESSION = 4


class SessionStore:
    """Per-client bounded, expiring maps of session keys to recurrent state (not thread safe: the
    service runs batches one at a time, on one thread)."""

    def __init__(self, ttl_s: float = 172_800.0, max_sessions: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_sessions < 1:
            raise ValueError(f"sessions: need ttl_s > 0 and max_sessions >= 1, got {ttl_s}, {max_sessions}")
        self.ttl_s, self.max_sessions, self._clock = float(ttl_s), int(max_sessions), clock
        self._parts: dict[str, OrderedDict[str, SessionEntry]] = {}
        self._lost: dict[str, OrderedDict[str, str]] = {}   # client -> key -> why (tombstones)
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts.values())

    def count(self, client: str = "default") -> int:
        return len(self._parts.get(client, ()))

    def _bury(self, client: str, key: str, why: str) -> None:
        lost = self._lost.setdefault(client, OrderedDict())
        lost[key] = why
        lost.move_to_end(key)
        while len(lost) > TOMBSTONES_PER_SESSION * self.max_sessions:
            lost.popitem(last=False)

    def _get(self, client: str, key: str) -> SessionEntry | None:
        part = self._parts.get(client)
        entry = part.get(key) if part else None
        if entry is not None and entry.expires_at <= self._clock():
            del part[key]  # type: ignore[union-attr]
            self.expired += 1
            self._bury(client, key, f"expired after {self.ttl_s:g} s without a request")
            return None
        return entry

    def begin(self, key: str, ts_ns: int, client: str = "default", reset: bool = False) -> SessionTicket:
        """The state a step on bar ``ts_ns`` starts from. Raises SessionConflictError for an old
        bar, SessionLostError for a session whose state was evicted or expired (unless ``reset``)."""
        entry = None if reset else self._get(client, key)
        if entry is None:
            lost = self._lost.get(client)
            why = None if reset or lost is None else lost.get(key)
            if why is not None:
                raise SessionLostError(
                    f"session {key.split('|')[0]!r}: its recurrent state is gone ({why}); resend with "
                    "reset_session: true to start it again from the initial state", ("body", "session_id"))
            return SessionTicket(key, None, 1, retry=False, exists=False, client=client)
        if ts_ns == entry.last_ts_ns:
            return SessionTicket(key, entry.prev_state, entry.step, retry=True, exists=True, client=client)
        if ts_ns < entry.last_ts_ns:
            raise SessionConflictError(
                f"session {key.split('|')[0]!r}: the last bar ({ts_ns}) is older than the bar the session "
                f"last stepped on ({entry.last_ts_ns}); send bars in time order (a new session_id restarts)",
                ("body", "session_id"))
        return SessionTicket(key, entry.state, entry.step + 1, retry=False, exists=True, client=client)

    def commit(self, ticket: SessionTicket, ts_ns: int, state: dict[str, Any]) -> None:
        """Store the state after the step described by ``ticket`` (in its client's partition)."""
        client = ticket.client
        part = self._parts.setdefault(client, OrderedDict())
        part[ticket.key] = SessionEntry(state, ticket.state_in, ts_ns, ticket.step, self._clock() + self.ttl_s)
        part.move_to_end(ticket.key)
        lost = self._lost.get(client)
        if lost:
            lost.pop(ticket.key, None)
        self.purge(client)

    def purge(self, client: str = "default") -> None:
        """Drop ``client``'s expired entries (oldest first) and its least recently used beyond
        its quota, leaving tombstones."""
        part = self._parts.get(client)
        now = self._clock()
        while part:
            key, entry = next(iter(part.items()))
            if len(part) > self.max_sessions:
                self.evicted += 1
                why = f"evicted: this API key keeps at most {self.max_sessions} sessions, least recently used first"
            elif entry.expires_at <= now:
                self.expired += 1
                why = f"expired after {self.ttl_s:g} s without a request"
            else:
                break
            del part[key]
            self._bury(client, key, why)
