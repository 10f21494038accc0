"""What a scheduler reports of the work waiting in it (`sched.queues.<scheduler>`), per resource
domain and priority class, for the admin API and dashboards."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Message
from contracts.requests import Priority


class ClassQueue(BaseModel):
    model_config = ConfigDict(frozen=True)

    waiting: int = Field(default=0, ge=0, description="Requests waiting for a free slot.")
    oldest_wait_ms: float = Field(default=0.0, ge=0, description="How long the oldest of them has waited.")
    dispatched: int = Field(default=0, ge=0, description="Requests sent to a worker since the scheduler started.")
    wait_p50_ms: float = Field(default=0.0, ge=0, description="Queue wait of recently dispatched requests.")
    wait_p95_ms: float = Field(default=0.0, ge=0)


class DomainQueue(BaseModel):
    model_config = ConfigDict(frozen=True)

    domain: str
    in_flight: int = Field(ge=0, description="Requests its live workers have in hand.")
    max_concurrency: int | None = Field(default=None, description="The domain's cap on requests in flight.")
    max_queue: int | None = Field(default=None, description="Waiting requests beyond which new ones are refused.")
    slots: int = Field(default=0, ge=0, description="Slots of its live workers.")
    classes: dict[Priority, ClassQueue] = Field(default_factory=dict)
    cold_starts: int = Field(default=0, ge=0, description="Requests whose model no live worker held when they came.")
    warm_hits: int = Field(default=0, ge=0, description="Requests whose model was loaded when they came.")


class QueueReport(Message):
    scheduler_id: str
    domains: tuple[DomainQueue, ...] = ()
    placements: dict[str, int] = Field(
        default_factory=dict,
        description="Load and unload commands sent, by reason (warm, demand, idle, surplus, preempted).",
    )
