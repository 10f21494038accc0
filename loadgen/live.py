"""The live terminal view of a run: per class, sent, finished, failed, in flight and running figures."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loadgen.runner import Progress
from loadgen.stats import percentile


def view(progress: Progress, kinds: dict[str, str]) -> Group:
    elapsed = progress.elapsed()
    done = len(progress.records)
    header = Text(
        f"{progress.phase}: {done}/{progress.total} requests, {elapsed:.1f} s of at most {progress.deadline:.0f} s"
    )
    table = Table(expand=False)
    for column in ("class", "kind", "done", "failed", "in flight", "req/s", "first ms p50", "e2e ms p50", "e2e ms p99"):
        table.add_column(column, justify="right" if column not in {"class", "kind"} else "left")
    for name, kind in kinds.items():
        mine = [r for r in progress.records if r.cls == name and not r.warmup]
        good = [r for r in mine if r.ok]
        firsts = [r.ttft * 1000 for r in good if r.ttft is not None]
        e2e = [r.latency * 1000 for r in good]
        span = max((r.end for r in good), default=0.0) - min((r.start for r in mine), default=0.0)
        table.add_row(
            name,
            kind,
            str(len(good)),
            str(len(mine) - len(good)),
            str(progress.in_flight.get(name, 0)),
            f"{len(good) / span:.2f}" if span > 0 else "-",
            f"{percentile(firsts, 50):.1f}" if firsts else "-",
            f"{percentile(e2e, 50):.1f}" if e2e else "-",
            f"{percentile(e2e, 99):.1f}" if e2e else "-",
        )
    return Group(header, table)


async def show(progress: Progress, kinds: dict[str, str], until: asyncio.Future[Any]) -> None:
    """Redraws four times a second until `until` is done, then once more."""
    with Live(view(progress, kinds), refresh_per_second=4, transient=False) as live:
        while not until.done():
            await asyncio.wait([until], timeout=0.25)
            live.update(view(progress, kinds))
