"""One pass of some work at a time, for work that any event may ask for (a freed slot, a heartbeat)
and that must never run twice at once: a request during a pass makes it run once more after it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SerialPasses:
    """Runs `one_pass` when asked, never two at once; asks made during a pass coalesce into one
    more pass after it. `idle()` waits until no pass is running."""

    def __init__(self, one_pass: Callable[[], Awaitable[None]]) -> None:
        self._one_pass = one_pass
        self._running = False
        self._again = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def ask(self) -> None:
        """Run passes until no ask is left; if one is running already, return at once (it runs again)."""
        if self._running:
            self._again = True
            return
        self._running = True
        self._idle.clear()
        try:
            self._again = True
            while self._again:
                self._again = False
                await self._one_pass()
        finally:
            self._running = False
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()
