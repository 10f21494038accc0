"""Holding a process to its resource domain on Linux: the CPUs it runs on, its niceness and
scheduling policy, and the private memory it may map; and measuring the RAM it may use (the
machine's, or its control group's limit).

`sched_idle` lets slow work fill its cores and still give them up at once to anything else that
wakes there: the control plane (NATS and the gateway, scheduler, aggregator and monitor, which every
real-time request crosses four times) may then run on every core. `control_plane` pins them instead
(`make run` starts them with `python -m services.common.confinement FILE -- CMD`), which leaves them
only their own cores: on a machine of few cores SCHED_IDLE for slow work serves chat better
(`python -m bench.isolation` compares the two).

A `ram_fraction` holds each worker of the domain to that part of the machine's RAM, or of its
container's memory limit where that is less: the kernel's limit on the process's private memory,
RLIMIT_DATA, which its children inherit, so it fails to allocate rather than take what another
domain owns.
"""

from __future__ import annotations

import logging
import os
import resource
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from services.common.domains import Domains, DomainSpec

log = logging.getLogger(__name__)


def confine(spec: DomainSpec) -> None:
    """Keep this process (its threads, those running already and those it starts) to the domain's
    CPUs, with thread pools sized to them, at the domain's niceness and scheduling policy, and to its
    share of RAM. Call it before the engine starts. (Its share of GPU memory is the engine's to
    keep: see `gpu_share.limit_gpu_memory`.)

    Linux sets CPUs, niceness and policy per thread, and a new thread inherits its creator's: each
    thread there now is set (a worker's metrics server and trace exporter start before its engine's
    kind, and so its domain, is known), and the ones started later inherit it."""
    threads = _threads()
    if cpus := spec.cpus:
        _each(threads, lambda tid: os.sched_setaffinity(tid, cpus))
        os.environ["OMP_NUM_THREADS"] = str(len(cpus))  # torch and BLAS size their pools by it
    if nice := spec.nice:  # never less nice than it was
        _each(
            threads, lambda tid: os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        )
    if spec.sched_idle:
        if hasattr(os, "SCHED_IDLE"):
            _each(threads, lambda tid: os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0)))
        else:  # pragma: no cover - Linux only
            log.warning("sched_idle is Linux only: this worker runs at the normal policy")
    if spec.ram_fraction is not None:
        _limit_private_memory(int(spec.ram_fraction * ram_mb() * 2**20))


def _threads() -> list[int]:
    """The ids of this process's threads (Linux); elsewhere 0, the calling one."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _each(threads: list[int], setting: Callable[[int], None]) -> None:
    for tid in threads:
        try:
            setting(tid)
        except ProcessLookupError:  # it ended meanwhile
            pass


def ram_mb() -> float:
    """The RAM this process may use: the machine's, or less where its control group (a container's
    memory limit, a systemd slice's MemoryMax) allows less."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    limit = cgroup_memory_limit_mb()
    return physical if limit is None else min(physical, limit)


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_memory_limit_mb(membership: str | None = None, root: Path = CGROUP_ROOT) -> float | None:
    """The tightest memory limit on this process's control group and the groups above it, in MB;
    None where there is none (or no cgroup filesystem). `membership` is /proc/self/cgroup's text:
    `0::/path` under cgroup v2 (limit in `memory.max`), `N:memory:/path` under v1 (in
    `memory.limit_in_bytes`). A container sees its own group as the root of the mount, so the walk
    up from its path reaches the limit whether or not the path exists inside it."""
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits: list[float] = []
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            mount, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        group = mount / path.lstrip("/")
        for folder in (group, *group.parents):
            limits += _limit_in(folder / name)
            if folder == mount:
                break
    return min(limits) / 2**20 if limits else None


def _limit_in(path: Path) -> list[float]:
    """The limit a cgroup file holds ([] if none: absent, `max`, or v1's near-2**63 'unlimited')."""
    try:
        text = path.read_text().strip()
    except OSError:
        return []
    return [float(text)] if text.isdigit() and int(text) < 2**60 else []


def _limit_private_memory(limit: int) -> None:
    """RLIMIT_DATA: the private writable memory (heap, anonymous maps, thread stacks) this process and
    the children it starts may map; beyond it allocations fail (MemoryError, a failed model load).
    Memory-mapped weight files are shared, read-only pages and do not count."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def memory_limit_note() -> str:
    """For a model that failed to load: the private-memory limit it ran under, if any ('' if none)."""
    limit, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if limit == resource.RLIM_INFINITY:
        return ""
    private = private_mb()
    now = f", {private:.0f} MB of it in use" if private is not None else ""
    return f" (within this worker's memory limit of {limit / 2**20:.0f} MB{now}: its domain's ram_fraction)"


def private_mb() -> float | None:
    """The private memory RLIMIT_DATA counts for this process now (VmData); None where /proc does not tell."""
    try:
        with open("/proc/self/status") as status:
            line = next((line for line in status if line.startswith("VmData:")), None)
    except OSError:
        return None
    return int(line.split()[1]) / 1024 if line else None


def held_mb() -> float:
    """The memory this process holds now (resident), where /proc tells; else its peak. (Not the peak
    on Linux: a process inherits its parent's peak across exec.)"""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kilobytes elsewhere


def confined_command(command: str, domains_file: Path | None) -> str:
    """`command`, run on the control plane's CPUs when the domains file names them."""
    if Domains.load(domains_file).control_plane is None:
        return command
    return f"{sys.executable} -m services.common.confinement {shlex.quote(str(domains_file))} -- {command}"


def _main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m services.common.confinement DOMAINS_FILE -- COMMAND [ARG...]")
    confine(Domains.load(argv[0]).control_plane or DomainSpec())
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    _main(sys.argv[1:])
