"""Recurrent state per session, with expiry (time to live) and a size bound (least recently used).

A session key is ``"<session_id>|<symbol>"`` (one recurrent state per symbol, as each env of a
backtest has its own); a portfolio model uses the session id alone. Each entry remembers the
last bar it stepped on and the state BEFORE that step, so:

* a newer bar advances the state (``step`` + 1);
* the same bar again is a retry: it recomputes from the state before that bar (idempotent);
* an older bar is a :class:`~serve.errors.SessionConflictError` (HTTP 409).

Entries live in the replica's memory: with several replicas, route a session to one replica
(``x-session-id`` header, see :mod:`serve.deployment`) or use window replay.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serve.errors import SessionConflictError


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


class SessionStore:
    """Bounded, expiring map of session keys to recurrent state (not thread safe: one event loop)."""

    def __init__(self, ttl_s: float = 172_800.0, max_sessions: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_sessions < 1:
            raise ValueError(f"sessions: need ttl_s > 0 and max_sessions >= 1, got {ttl_s}, {max_sessions}")
        self.ttl_s, self.max_sessions, self._clock = float(ttl_s), int(max_sessions), clock
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: str) -> SessionEntry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            del self._entries[key]
            self.expired += 1
            return None
        return entry

    def begin(self, key: str, ts_ns: int) -> SessionTicket:
        """The state a step on bar ``ts_ns`` starts from; raises SessionConflictError for an old bar."""
        entry = self._get(key)
        if entry is None:
            return SessionTicket(key, None, 1, retry=False, exists=False)
        if ts_ns == entry.last_ts_ns:
            return SessionTicket(key, entry.prev_state, entry.step, retry=True, exists=True)
        if ts_ns < entry.last_ts_ns:
            raise SessionConflictError(
                f"session {key.split('|')[0]!r}: the last bar ({ts_ns}) is older than the bar the session "
                f"last stepped on ({entry.last_ts_ns}); send bars in time order (a new session_id restarts)",
                ("body", "session_id"))
        return SessionTicket(key, entry.state, entry.step + 1, retry=False, exists=True)

    def commit(self, ticket: SessionTicket, ts_ns: int, state: dict[str, Any]) -> None:
        """Store the state after the step described by ``ticket``."""
        self._entries[ticket.key] = SessionEntry(state, ticket.state_in, ts_ns, ticket.step,
                                                 self._clock() + self.ttl_s)
        self._entries.move_to_end(ticket.key)
        self.purge()

    def purge(self) -> None:
        """Drop expired entries (oldest first) and the least recently used beyond the bound."""
        now = self._clock()
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if len(self._entries) > self.max_sessions:
                self.evicted += 1
            elif entry.expires_at <= now:
                self.expired += 1
            else:
                break
            del self._entries[key]
