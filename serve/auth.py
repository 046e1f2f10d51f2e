"""The API key: read from an environment variable, kept only as a salted SHA-256 digest.

The key never travels further than the process that reads it: the Serve replicas receive the
salt and the digest (constructor arguments are stored by Ray's controller, so the key itself
must not be one), and compare digests with :func:`hmac.compare_digest` (constant time).

Several clients: ``RAYTRADE_API_KEY="desk1:<key1>,desk2:<key2>"`` gives each client its own key
and name; the name partitions recurrent sessions (one client cannot evict another's). A single
key without a name is the client ``default``. Keys from ``secrets.token_urlsafe`` never contain
``:`` or ``,``.
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
    digest: bytes                                  # the first key's
    clients: tuple[tuple[str, bytes], ...] = ()    # (name, digest) of every key; () = (("default", digest),)

    @classmethod
    def from_key(cls, key: str) -> ApiKeyVerifier:
        return cls.from_keys({"default": key})

    @classmethod
    def from_keys(cls, keys: dict[str, str]) -> ApiKeyVerifier:
        """One verifier for several named keys (``{client name: key}``)."""
        if not keys:
            raise ConfigError("API key: none given")
        for name, key in keys.items():
            if len(key) < MIN_KEY_CHARS:
                raise ConfigError(f"API key{'' if name == 'default' else f' of {name!r}'}: use at least "
                                  f"{MIN_KEY_CHARS} characters (e.g. python -c 'import secrets; "
                                  "print(secrets.token_urlsafe(32))')")
        if len(set(keys.values())) != len(keys):
            raise ConfigError("API keys: two clients share a key")
        salt = secrets.token_bytes(16)
        clients = tuple((name, _hash(salt, key)) for name, key in keys.items())
        return cls(salt, clients[0][1], clients)

    @staticmethod
    def parse(value: str) -> dict[str, str]:
        """``key`` or ``name:key,name2:key2`` -> ``{name: key}``."""
        if ":" not in value and "," not in value:
            return {"default": value}
        out: dict[str, str] = {}
        for part in value.split(","):
            name, sep, key = part.strip().partition(":")
            if not sep or not name or name in out:
                raise ConfigError("API keys: expected name:key[,name:key...] with distinct names")
            out[name] = key
        return out

    @classmethod
    def from_env(cls, name: str = DEFAULT_ENV) -> ApiKeyVerifier:
        """From the environment variable ``name``; a ConfigError if it is unset or too short."""
        key = os.environ.get(name, "")
        if not key:
            raise ConfigError(f"{name} is not set: the service requires an API key on every route but "
                              f"/v1/health (export {name}=$(python -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'))")
        return cls.from_keys(cls.parse(key))

    def identify(self, presented: str | None) -> str | None:
        """The client whose key ``presented`` is, else None (the same work for every key)."""
        digest = _hash(self.salt, presented or "")
        found = None
        for name, expected in self.clients or (("default", self.digest),):
            if hmac.compare_digest(digest, expected) and presented:
                found = name
        return found

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is a configured key."""
        return self.identify(presented) is not None

    def __repr__(self) -> str:
        return "ApiKeyVerifier(<redacted>)"


def _hash(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).digest()
