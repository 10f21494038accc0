"""Resource domains, as configured: named pools of workers, each with its own queue, its own cap on
work in flight and its own share of the machine, so slow work (images) never takes what real-time
work (chat) owns.

One YAML file (the setting `domains_file`, MODALMESH_DOMAINS_FILE) names them; the scheduler reads
it for queues and caps, each worker for the CPUs it may run on and its share of memory:

    control_plane: {cpus: [0]}
    domains:
      llm-realtime: {cpus: [0]}
      image: {max_concurrency: 1, max_queue: 100, cpus: [1], nice: 19, sched_idle: true, gpu_memory_fraction: 0.3}
      speech: {ram_fraction: 0.1}

How a worker is held to its domain is in `confinement.py` (CPUs, scheduling, RAM) and
`gpu_share.py` (GPU memory, and what a host worker may fill).

A worker joins a domain with `MODALMESH_WORKER_DOMAIN`; without one it is in its modality's own
domain (`llm`, `embedding`, `image`, `speech`), so every kind of work has its own queue even with
no file. A domain the file does not name has no cap.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from contracts.requests import TEXT_MODALITIES, Modality

DOMAINS_FILE_ENV = "MODALMESH_DOMAINS_FILE"  # the setting's name, for messages


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
    def load(cls, path: Path | str | None) -> Domains:
        """The file at `path` (the setting `domains_file`); no file, no caps. A bad file fails loudly."""
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
