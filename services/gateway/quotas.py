"""Per-key token quotas a UTC day and a calendar month, counted in the `quotas` bucket by every gateway.

A request is admitted while the key's tokens of the day (month) are under its quota, and its real
tokens (prompt + completion, from its final chunk) are added when it finishes, with a compare-and-set
on the counter's revision. So requests in flight when the quota runs out may end past it, by at
most their own tokens; the next one is refused (429, naming the quota).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.errors import BusUnavailable
from services.gateway.auth import KeyEntry
from services.gateway.ratelimit import RateLimited

PERIODS = ("day", "month")


def period(now: dt.datetime, kind: str) -> tuple[str, dt.datetime]:
    """The name of `now`'s day or month (UTC) and when it ends."""
    if kind == "day":
        start = dt.datetime(now.year, now.month, now.day, tzinfo=dt.timezone.utc)
        return start.date().isoformat(), start + dt.timedelta(days=1)
    following = dt.datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return f"{now.year:04d}-{now.month:02d}", following


def limits(key: KeyEntry) -> dict[str, int]:
    quotas = {"day": key.tokens_per_day, "month": key.tokens_per_month}
    return {kind: quota for kind, quota in quotas.items() if quota is not None}


class Quotas:
    def __init__(self, kv: KeyValue, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.kv = kv
        self.clock = clock

    async def check(self, key: KeyEntry) -> None:
        """RateLimited (429, naming the quota) when the key has used up a quota of its day or month."""
        now = self.clock()
        for kind, quota in limits(key).items():
            name, ends = period(now, kind)
            try:
                used, _ = await self._read(f"{key.id}.{kind}.{name}")
            except nats.errors.Error as exc:
                raise BusUnavailable("the message bus did not answer the quota check; retry shortly") from exc
            if used >= quota:
                retry_s = math.ceil((ends - now).total_seconds())
                raise RateLimited(
                    f"The key `{key.name}` has used its quota of {quota} tokens per {kind} ({used} in {name})",
                    {"retry-after": str(retry_s)},
                )

    async def add(self, key: KeyEntry, tokens: int) -> None:
        """Count a finished request's tokens in each of the key's quotas."""
        now = self.clock()
        for kind in limits(key):
            name = f"{key.id}.{kind}.{period(now, kind)[0]}"
            while True:
                used, revision = await self._read(name)
                value = str(used + tokens).encode()
                try:
                    if revision:
                        await self.kv.update(name, value, last=revision)
                    else:
                        await self.kv.create(name, value)
                    break
                except KeyWrongLastSequenceError:
                    continue  # another gateway added first: read again

    async def _read(self, name: str) -> tuple[int, int]:
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            return 0, 0
        return int(entry.value or b"0"), entry.revision or 0
