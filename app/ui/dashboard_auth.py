"""The dashboard's API key: Serve's scheme (``serve/auth.py``), copied here because ``app.ui`` may
not import ``serve``: the key comes from an environment variable and is kept only as a salted
SHA-256 digest, compared in constant time.

Every route but ``/login``, ``/api/health`` and the static assets needs the key, as
``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` (scripts), or a session cookie that
``POST /login`` sets after checking the key (browsers; HttpOnly, SameSite=Strict, random,
kept in memory only, so restarting the dashboard logs everyone out).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field

from app.errors import ConfigError

DEFAULT_ENV = "RAYTRADE_API_KEY"
MIN_KEY_CHARS = 16
COOKIE = "raytrade_session"
SESSION_TTL_S = 12 * 3600.0


@dataclass(frozen=True, repr=False)
class ApiKeyVerifier:
    """Checks a presented key against the configured one without holding it."""

    salt: bytes
    digest: bytes

    @classmethod
    def from_key(cls, key: str) -> ApiKeyVerifier:
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"API key: use at least {MIN_KEY_CHARS} characters (e.g. "
                              "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        salt = secrets.token_bytes(16)
        return cls(salt, _hash(salt, key))

    @classmethod
    def from_env(cls, name: str = DEFAULT_ENV) -> ApiKeyVerifier:
        """From the environment variable ``name``; a ConfigError if it is unset or too short."""
        key = os.environ.get(name, "")
        if not key:
            raise ConfigError(f"{name} is not set: the dashboard requires an API key (export {name}=$(python -c "
                              "'import secrets; print(secrets.token_urlsafe(32))'))")
        return cls.from_key(key)

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is the key (the same work whether or not a key was presented)."""
        return hmac.compare_digest(_hash(self.salt, presented or ""), self.digest) and bool(presented)

    def __repr__(self) -> str:
        return "ApiKeyVerifier(<redacted>)"


@dataclass
class Sessions:
    """Browser sessions opened by ``POST /login``: random tokens with an expiry, in memory."""

    ttl_s: float = SESSION_TTL_S
    _expiry: dict[str, float] = field(default_factory=dict)

    def open(self) -> str:
        token = secrets.token_urlsafe(32)
        self._expiry[token] = time.monotonic() + self.ttl_s
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        now = time.monotonic()
        for stale in [t for t, exp in self._expiry.items() if exp < now]:
            del self._expiry[stale]
        return token in self._expiry

    def close(self, token: str | None) -> None:
        self._expiry.pop(token or "", None)


def _hash(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).digest()
