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
        hits = [i for i in (buf.find(s) for s in self.stops if s) if i >= 0]
        if hits:
            self.stopped, self.held = True, ""
            return buf[: min(hits)]
        keep = max((n for s in self.stops for n in range(min(len(s) - 1, len(buf)), 0, -1)
                    if buf.endswith(s[:n])), default=0)
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """At the end of generation: what was held back was not a stop sequence after all."""
        out, self.held = ("" if self.stopped else self.held), ""
        return out
