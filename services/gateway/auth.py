"""API keys: bearer tokens checked against SHA-256 hashes, so no key is ever kept in plain text.

Keys come from `MODALMESH_GATEWAY_API_KEYS` (plain, hashed at start) and/or a file of hashes,
`MODALMESH_GATEWAY_API_KEYS_FILE`, one key a line: `<sha256 hex> [name] [scope] [priority]`, where
scope is `full` (the default), `read` (GET routes only) or `admin` (also the admin API), and priority
is the class (realtime, interactive, batch) of the key's requests that name none. Keys from the
environment have scope admin. `python -m services.gateway.auth hash KEY` prints such a line.
Keys made through the admin API (services.gateway.keys) live in the `keys` bucket, followed by every
gateway, and may carry allowed models, an expiry and per-minute limits. Health probes and the docs
need no key.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from contracts.base import now_ms
from contracts.errors import ModalMeshError, PermissionDenied, Unauthenticated
from contracts.keys import ManagedKey
from contracts.requests import Priority

SCOPES = ("full", "read", "admin")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    digest: str
    name: str = "key"
    scope: str = "full"
    priority: Priority | None = None
    id: str = ""  # set for keys from the admin API, which the limits below apply to
    models: frozenset[str] | None = None  # None: every model
    expires_at_ms: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    cache: bool = True

    @classmethod
    def managed(cls, digest: str, key: ManagedKey) -> KeyEntry:
        return cls(
            digest,
            key.name,
            key.scope,
            key.priority,
            key.id,
            None if key.models is None else frozenset(key.models),
            key.expires_at_ms,
            key.rpm,
            key.tpm,
            key.tokens_per_day,
            key.tokens_per_month,
            key.cache,
        )

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models


class KeyRing:
    def __init__(self, entries: list[KeyEntry]) -> None:
        self.entries = entries
        self.managed: dict[str, KeyEntry] = {}  # by digest: the `keys` bucket, as services.gateway.keys follows it

    @classmethod
    def load(cls, plain: list[str], file: Path | None) -> KeyRing:
        # Keys from the environment are the operator's own: they may use the admin API.
        entries = [KeyEntry(key_hash(k), f"env-{i}", "admin") for i, k in enumerate(plain) if k]
        if file is not None:
            for n, line in enumerate(file.read_text().splitlines(), 1):
                parts = line.split("#", 1)[0].split()
                if not parts:
                    continue
                if len(parts[0]) != 64 or any(c not in "0123456789abcdef" for c in parts[0]):
                    raise ValueError(f"{file}:{n}: expected a sha256 hex digest, got {parts[0][:12]!r}...")
                scope = parts[2] if len(parts) > 2 else "full"
                if scope not in SCOPES:
                    raise ValueError(f"{file}:{n}: scope must be one of {', '.join(SCOPES)}, not {scope!r}")
                try:
                    priority = Priority(parts[3]) if len(parts) > 3 else None
                except ValueError:
                    raise ValueError(f"{file}:{n}: priority must be realtime, interactive or batch") from None
                entries.append(KeyEntry(parts[0], parts[1] if len(parts) > 1 else f"file-{n}", scope, priority))
        if not entries:
            raise ValueError("no API key configured: set MODALMESH_GATEWAY_API_KEYS or MODALMESH_GATEWAY_API_KEYS_FILE")
        return cls(entries)

    def find(self, key: str) -> KeyEntry | None:
        digest = key_hash(key)
        # A dict look-up of a digest leaks nothing about the key: the timing depends on its hash only.
        if (managed := self.managed.get(digest)) is not None:
            return managed
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest):
                return entry
        return None


def check_key(request: Request) -> KeyEntry:
    """The request's API key: 401 without a known key, 403 beyond its scope."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Missing API key: send `Authorization: Bearer <key>`")
    entry = request.app.state.keys.find(token.strip())
    if entry is None:
        raise Unauthenticated("Incorrect API key provided")
    if entry.expires_at_ms is not None and entry.expires_at_ms <= now_ms():
        raise Unauthenticated(f"The API key `{entry.name}` has expired")
    if entry.scope == "read" and request.method not in ("GET", "HEAD"):
        raise PermissionDenied(f"The key `{entry.name}` may only read")
    request.state.api_key = entry
    return entry


async def authenticate(request: Request) -> KeyEntry:
    """FastAPI dependency for every protected route (see `check_key`). A coroutine, like every
    dependency here: FastAPI runs a plain function in its thread pool, a thread hand-off per request
    for work that takes microseconds."""
    return check_key(request)


async def require_admin(request: Request) -> None:
    """For the admin API, after `authenticate`: 403 unless the key's scope is admin."""
    entry: KeyEntry = request.state.api_key
    if entry.scope != "admin":
        raise PermissionDenied(f"The key `{entry.name}` may not use the admin API")


def _main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "hash":
        raise SystemExit("usage: python -m services.gateway.auth hash KEY")
    print(f"{key_hash(argv[1])} name full")


__all__ = ["KeyEntry", "KeyRing", "ModalMeshError", "authenticate", "check_key", "key_hash", "require_admin"]

if __name__ == "__main__":
    _main(sys.argv[1:])
