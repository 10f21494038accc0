"""Stop sequences over streamed text: pure, so any engine that streams text can share it.

Text that might be the start of a stop sequence is held back until the next piece shows whether it
is; text up to (not including) the first stop sequence is released; nothing after it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StopScanner:
    stops: tuple[str, ...]
    held: str = ""
    stopped: bool = False

    def feed(self, text: str) -> str:
        """Take the next piece of text; return what can be released now."""
        if self.stopped:
            return ""
        buf = self.held + text
        hits = self._hits(buf)
        first = min(hits) if hits else len(buf)
        # Where a stop sequence could still begin: a proper prefix of one ends the buffer. One that
        # begins before the first complete hit may yet complete and cut the text earlier.
        open_at = min(
            (
                len(buf) - n
                for s in self.stops
                for n in range(1, min(len(s), len(buf) + 1))
                if buf.endswith(s[:n]) and len(buf) - n < first
            ),
            default=None,
        )
        if open_at is None:
            self.held, self.stopped = "", bool(hits)
            return buf[:first]
        self.held = buf[open_at:]
        return buf[:open_at]

    def flush(self) -> str:
        """At the end of generation: what was held back, up to a stop sequence it holds."""
        if self.stopped:
            return ""
        buf, self.held = self.held, ""
        hits = self._hits(buf)
        self.stopped = bool(hits)
        return buf[: min(hits)] if hits else buf

    def _hits(self, buf: str) -> list[int]:
        return [i for i in (buf.find(s) for s in self.stops if s) if i >= 0]
