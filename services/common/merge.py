"""Ordering result chunks: pure state per request, no I/O.

Chunks arrive with `seq` numbers; the merge releases them strictly in order, holds back those that
arrive early, drops duplicates (redeliveries, retried publishes), and ends the request at its first
terminal chunk. An error ends the request at once: whatever was released before it stands.

After a failover, a new attempt continues the numbering where the delivered text ended; from its
first chunk on, chunks of older attempts (a worker that was only presumed dead) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.results import AnyChunk, Artifact, ArtifactChunk, DeltaChunk, ErrorChunk, FinalChunk, ProgressChunk


@dataclass
class RequestMerge:
    attempt: int = 1
    next_seq: int = 0
    held: dict[int, AnyChunk] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    progress: ProgressChunk | None = None
    terminal: FinalChunk | ErrorChunk | None = None

    @property
    def done(self) -> bool:
        return self.terminal is not None

    def accept(self, chunk: AnyChunk) -> list[AnyChunk]:
        """Take one chunk; return the chunks now ready to go out, in order (often none or one)."""
        if self.done or chunk.attempt < self.attempt:
            return []  # finished, or from an attempt that was superseded by a re-assignment
        if chunk.attempt > self.attempt:
            self.attempt = chunk.attempt
            self.held = {s: c for s, c in self.held.items() if c.attempt >= chunk.attempt}
        if isinstance(chunk, ErrorChunk):
            self.terminal = chunk
            return [chunk]
        if chunk.seq < self.next_seq or chunk.seq in self.held:
            return []
        self.held[chunk.seq] = chunk
        ready: list[AnyChunk] = []
        while self.next_seq in self.held and not self.done:
            nxt = self.held.pop(self.next_seq)
            self.next_seq += 1
            ready.append(nxt)
            if isinstance(nxt, DeltaChunk):
                self.text.append(nxt.text)
                self._tokens += nxt.tokens
            elif isinstance(nxt, ArtifactChunk):
                self.artifacts.append(nxt.artifact)
            elif isinstance(nxt, ProgressChunk):
                self.progress = nxt
            elif isinstance(nxt, FinalChunk):
                self.terminal = nxt
        if self.done:
            self.held.clear()
        return ready

    @property
    def merged_text(self) -> str:
        return "".join(self.text)

    @property
    def delivered_tokens(self) -> int:
        return self._tokens

    def __post_init__(self) -> None:
        self._tokens = 0
