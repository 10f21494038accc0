"""One request as the load generator saw it: times in seconds from the start of the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Record:
    cls: str
    kind: str
    seq: int
    start: float
    warmup: bool = False
    end: float = 0.0
    status: int = 0  # the HTTP status; 0 when no answer came (connection refused, timeout)
    error: str = ""  # the error code (the OpenAI error's `code`, `http_<status>`, `timeout`, ...); "" when good
    ttft: float | None = None  # first token (text), first progress (image/video task), first audio byte
    itls: list[float] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    items: int = 0  # embeddings: inputs; images: images made
    first_progress: float | None = None  # seconds after start: an image or video task's first progress event
    first_byte: float | None = None  # seconds after start: speech's first audio byte
    audio_s: float | None = None  # speech: seconds of audio in the answer
    queue_wait: float | None = None  # video: accepted to the first event from a worker

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.error

    @property
    def latency(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


CSV_FIELDS = [f.name for f in fields(Record) if f.name != "itls"] + ["itl_count", "latency", "ok"]


def csv_row(record: Record) -> dict[str, Any]:
    row = {k: v for k, v in record.to_dict().items() if k != "itls"}
    return {**row, "itl_count": len(record.itls), "latency": record.latency, "ok": record.ok}
