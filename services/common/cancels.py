"""Remembering which requests were cancelled, so one cancelled before it reached its worker (still in
REQUESTS or ASSIGNMENTS) ends as cancelled when it gets there, instead of running."""

from __future__ import annotations

import time
from collections import OrderedDict

from nats.aio.msg import Msg

from contracts.control import Cancel


class RecentCancels:
    def __init__(self, keep_s: float = 3600.0, most: int = 100_000) -> None:
        self.keep_s = keep_s
        self.most = most
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, request_id: str) -> None:
        self._seen[request_id] = time.monotonic()
        self._seen.move_to_end(request_id)
        cutoff = time.monotonic() - self.keep_s
        while self._seen and (len(self._seen) > self.most or next(iter(self._seen.values())) < cutoff):
            self._seen.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._seen

    def observe(self, msg: Msg) -> Cancel | None:
        """Record the cancel in `msg` (a `cancel.<request>` message); None if it does not decode."""
        try:
            cancel = Cancel.decode(msg.data)
        except ValueError:
            return None
        self.add(cancel.request_id)
        return cancel
