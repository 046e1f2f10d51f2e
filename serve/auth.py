"""The API key: read from an environment variable, kept only as a salted SHA-256 digest.

The key never travels further than the process that reads it: the Serve replicas receive the
salt and the digest (constructor arguments are stored by Ray's controller, so the key itself
must not be one), and compare digests with :func:`hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from app.errors import ConfigError

DEFAULT_ENV = "RAYTRADE_API_KEY"
MIN_KEY_CHARS = 16


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
            raise ConfigError(f"{name} is not set: the service requires an API key on every route but "
                              f"/v1/health (export {name}=$(python -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'))")
        return cls.from_key(key)

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is the key (the same work whether or not a key was presented)."""
        return hmac.compare_digest(_hash(self.salt, presented or ""), self.digest) and bool(presented)

    def __repr__(self) -> str:
        return "ApiKeyVerifier(<redacted>)"


def _hash(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).digest()
