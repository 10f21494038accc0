"""What a doctor check says (ok / warn / fail and why), and the report as a table or as JSON."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(str, Enum):
    ok = "ok"
    warn = "warn"  # works, with something the operator should know (no GPU, an engine not installed)
    fail = "fail"  # this node will not work as configured: the exit status is non-zero


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(description="What was checked: gpu, driver, engine:llama_cpp, nats, clock ...")
    status: Status
    reason: str = Field(description="Why it has that status, in words an operator can act on.")
    details: dict[str, Any] = Field(default_factory=dict, description="The readings behind the reason.")
    seconds: float = Field(default=0.0, description="How long the check took.")


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)

    node: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(c.status is Status.fail for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status is s for c in self.checks) for s in Status}

    def as_json(self) -> str:
        body = {"node": self.node, "ok": not self.failed, "counts": self.counts(), **self.model_dump(mode="json")}
        return json.dumps(body, indent=2)


def timed(name: str, check: Callable[[], Check], plus_s: float = 0.0) -> Check:
    """Run one check, timing it (`plus_s`: the reading it judges, taken before); an exception it did
    not expect is its failure, not the doctor's."""
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:
        result = Check(name=name, status=Status.fail, reason=f"the check itself failed: {type(exc).__name__}: {exc}")
    return result.model_copy(update={"seconds": round(time.perf_counter() - started + plus_s, 3)})


async def timed_async(name: str, check: Callable[[], Awaitable[Check]]) -> Check:
    started = time.perf_counter()
    try:
        result = await check()
    except Exception as exc:
        result = Check(name=name, status=Status.fail, reason=f"the check itself failed: {type(exc).__name__}: {exc}")
    return result.model_copy(update={"seconds": round(time.perf_counter() - started, 3)})


def table(report: Report, width: int = 120) -> str:
    """The report as plain text: one row per check, its reason wrapped under its own column."""
    name_w = max(len("check"), *(len(c.name) for c in report.checks)) if report.checks else 5
    head = f"{'status':<6}  {'check':<{name_w}}  {'time':>7}  reason"
    reason_w = max(30, width - len(head) + len("reason"))
    lines = [f"modalmesh doctor on {report.node}", head, "-" * min(width, len(head) + reason_w - len("reason"))]
    for c in report.checks:
        wrapped = textwrap.wrap(c.reason, reason_w) or [""]
        lines.append(f"{c.status.value:<6}  {c.name:<{name_w}}  {c.seconds:>6.2f}s  {wrapped[0]}")
        pad = " " * (6 + 2 + name_w + 2 + 7 + 2)
        lines += [pad + more for more in wrapped[1:]]
    counts = report.counts()
    verdict = "FAIL: this node is not ready" if report.failed else "ready"
    lines.append(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail: {verdict}")
    return "\n".join(lines)
