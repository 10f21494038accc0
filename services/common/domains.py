"""Resource domains: named pools of workers, each with its own queue, its own cap on work in flight
and its own share of the machine, so slow work (images) never takes what real-time work (chat) owns.

One YAML file, `MODALMESH_DOMAINS_FILE`, names them; the scheduler reads it for queues and caps,
each worker for the CPUs it may run on and its share of GPU memory:

    control_plane: {cpus: [0]}
    domains:
      llm-realtime: {cpus: [0]}
      image: {max_concurrency: 1, max_queue: 100, cpus: [1], nice: 19, sched_idle: true, gpu_memory_fraction: 0.3}
      speech: {ram_fraction: 0.1}

A memory share holds each worker of the domain to that part of its GPU (`gpu_memory_fraction`: torch's
per-process cap, vLLM's `gpu_memory_utilization`) or of the machine's RAM, or of its container's
memory limit where that is less (`ram_fraction`: the kernel's limit on the process's private memory,
RLIMIT_DATA, which its children inherit), so it fails to allocate rather than take what another
domain owns; a host worker given no MEMORY_MB plans its models within the share.

`sched_idle` lets slow work fill its cores and still give them up at once to anything else that
wakes there: the control plane (NATS and the gateway, scheduler, aggregator and monitor, which every
real-time request crosses four times) may then run on every core. `control_plane` pins them instead
(`make run` starts them with `python -m services.common.domains -- CMD`); on two cores the
isolation bench measured pinning slower for chat, idle and loaded alike, than SCHED_IDLE image work.

A worker joins a domain with `MODALMESH_WORKER_DOMAIN`; without one it is in its modality's own
domain (`llm`, `embedding`, `image`, `speech`), so every kind of work has its own queue even with
no file. A domain the file does not name has no cap.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from contracts.requests import TEXT_MODALITIES, Modality

log = logging.getLogger(__name__)
DOMAINS_FILE_ENV = "MODALMESH_DOMAINS_FILE"
GPU_SHARE_ENV = "MODALMESH_GPU_MEMORY_FRACTION"  # set by `confine`, read by `limit_gpu_memory`


class DomainSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrency: int | None = Field(default=None, ge=1, description="Requests in flight on its workers, at most.")
    max_queue: int | None = Field(default=None, ge=0, description="Waiting requests beyond which new ones get 429.")
    cpus: tuple[int, ...] | None = Field(default=None, min_length=1, description="CPU cores its workers run on.")
    nice: int | None = Field(
        default=None,
        ge=0,
        le=19,
        description="CPU niceness of its workers: the kernel "
        "runs anything less nice (the control plane, real-time workers) first on shared cores.",
    )
    sched_idle: bool = Field(
        default=False,
        description="Linux SCHED_IDLE for its workers: they get a core only "
        "when nothing else wants it, and anything waking there (the control plane, a real-time "
        "worker) takes it at once. Stronger than nice 19, which still gives them a share.",
    )
    gpu_memory_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of its GPU's memory each of its workers may take (torch engines, vLLM).",
    )
    ram_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of the machine's RAM each of its workers (with what they start) may take.",
    )


class Domains(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    control_plane: DomainSpec | None = Field(
        default=None, description="CPUs (and niceness) of NATS and the gateway, scheduler, aggregator and monitor."
    )
    domains: dict[str, DomainSpec] = Field(default_factory=dict)

    def spec(self, name: str) -> DomainSpec:
        return self.domains.get(name) or DomainSpec()

    @classmethod
    def load(cls, path: Path | str | None = None) -> Domains:
        """The file at `path` (or `MODALMESH_DOMAINS_FILE`); no file, no caps. A bad file fails loudly."""
        path = path or os.environ.get(DOMAINS_FILE_ENV)
        if not path:
            return cls()
        try:
            return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise SystemExit(f"{DOMAINS_FILE_ENV}={path}: {exc}") from None


def default_domain(modalities: tuple[Modality, ...]) -> str:
    """The domain of a worker that names none: one per kind of work."""
    kinds = set(modalities)
    if kinds and kinds <= TEXT_MODALITIES:
        return "llm"
    if kinds and kinds <= {Modality.image, Modality.video}:
        return "image"
    if kinds == {Modality.embedding}:
        return "embedding"
    if kinds == {Modality.speech}:
        return "speech"
    return "default"


def confine(spec: DomainSpec) -> None:
    """Keep this process (its threads, those running already and those it starts) to the domain's
    CPUs, with thread pools sized to them, at the domain's niceness and scheduling policy, to its
    share of RAM, and a GPU engine to its share of GPU memory. Call it before the engine starts.

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
    if spec.gpu_memory_fraction is not None:
        os.environ[GPU_SHARE_ENV] = str(spec.gpu_memory_fraction)
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


def gpu_memory_share() -> float | None:
    """The share of its GPU's memory this worker's domain gives it (set by `confine`); None: no cap."""
    share = os.environ.get(GPU_SHARE_ENV)
    return float(share) if share else None


def share_budget_mb(spec: DomainSpec, device: str) -> float | None:
    """The memory a host worker on `device` may fill with models within its domain's share: of the
    GPU's on CUDA, of the machine's RAM otherwise, less what the process holds already. None: the
    domain gives no share there."""
    if device.startswith("cuda"):
        if spec.gpu_memory_fraction is None:
            return None
        import torch

        return spec.gpu_memory_fraction * torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**20
    if spec.ram_fraction is None:
        return None
    return max(0.0, spec.ram_fraction * ram_mb() - held_mb())


def held_mb() -> float:
    """The memory this process holds now (resident), where /proc tells; else its peak. (Not the peak
    on Linux: a process inherits its parent's peak across exec.)"""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kilobytes elsewhere


def limit_gpu_memory(device: str) -> None:
    """For a torch engine about to load onto `device`: hold it to the domain's share of that GPU's
    memory (set by `confine`), so a model that outgrows it fails to allocate instead of taking what
    another domain owns."""
    share = gpu_memory_share()
    if share is not None and device.startswith("cuda"):
        import torch

        torch.cuda.set_per_process_memory_fraction(share, torch.device(device))


def confined_command(command: str, domains: Domains | None = None) -> str:
    """`command`, run on the control plane's CPUs when the domains file (or `domains`) names them."""
    if (domains if domains is not None else Domains.load()).control_plane is None:
        return command
    return f"{sys.executable} -m services.common.domains -- {command}"


def _main(argv: list[str]) -> None:
    if not argv or argv[0] != "--" or len(argv) < 2:
        raise SystemExit("usage: python -m services.common.domains -- COMMAND [ARG...]")
    confine(Domains.load().control_plane or DomainSpec())
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    _main(sys.argv[1:])
