"""CPU, memory and load through psutil: every node has these."""

from __future__ import annotations

import os

import psutil

from services.monitor.sources import Reading, StaticInfo


class HostSource:
    name = "psutil"

    def open(self) -> str | None:
        psutil.cpu_percent(interval=None)  # primes the counter; the next call measures since now
        return None

    def static(self) -> StaticInfo:
        return StaticInfo()

    def read(self) -> Reading:
        mem = psutil.virtual_memory()
        return Reading(
            cpu_pct=psutil.cpu_percent(interval=None),
            mem_used_mb=(mem.total - mem.available) / 2**20,
            mem_total_mb=mem.total / 2**20,
            load1=os.getloadavg()[0],
        )

    def close(self) -> None:
        pass
