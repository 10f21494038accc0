"""API keys managed live: made and revoked through the admin API, kept hashed in the `keys` bucket,
and followed by every gateway (a KV watcher), so a new or revoked key counts everywhere at once."""

from __future__ import annotations

import asyncio
import secrets

from nats.js.kv import KeyValue

from contracts import streams
from contracts.base import now_ms
from contracts.keys import ManagedKey
from services.common.bus import Bus
from services.common.fleet import watch_bucket
from services.gateway.auth import KeyEntry, KeyRing, key_hash

SECRET_PREFIX = "mm-"


class KeyStore:
    """The `keys` bucket and this gateway's copy of it (in `ring.managed`)."""

    def __init__(self, kv: KeyValue, ring: KeyRing) -> None:
        self.kv = kv
        self.ring = ring
        self.records: dict[str, ManagedKey] = {}  # by digest, as stored (for listing)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def follow(cls, bus: Bus, ring: KeyRing) -> KeyStore:
        store = cls(await bus.js.key_value(streams.KV_KEYS), ring)
        watcher = await store.kv.watchall()
        store._task = asyncio.create_task(watch_bucket(watcher, store._apply))
        return store

    def _apply(self, digest: str, value: bytes | None) -> None:
        if value is None:
            self.ring.managed.pop(digest, None)
            self.records.pop(digest, None)
        else:
            record = ManagedKey.decode(value)
            self.records[digest] = record
            self.ring.managed[digest] = KeyEntry.managed(digest, record)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def create(self, **fields: object) -> tuple[str, ManagedKey]:
        """A new key (its secret, returned this once) and its record, stored under its digest."""
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        digest = key_hash(secret)
        key = ManagedKey.model_validate({**fields, "id": f"key_{digest[:16]}", "created_at_ms": now_ms()})
        value = key.encode()
        await self.kv.create(digest, value)
        self._apply(digest, value)  # usable on this gateway before the watcher echoes it
        return secret, key

    def listed(self) -> list[ManagedKey]:
        return sorted(self.records.values(), key=lambda k: k.created_at_ms)

    async def revoke(self, key_id: str) -> ManagedKey | None:
        for digest, record in list(self.records.items()):
            if record.id == key_id:
                await self.kv.purge(digest)
                self._apply(digest, None)
                return record
        return None
