"""Scheduler settings (env prefix MODALMESH_SCHEDULER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.scheduler.policy import Limits, Policy, Weights


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_SCHEDULER_", extra="ignore")

    policy: Policy = Field(default=Policy.weighted, description="weighted, least_outstanding, round_robin, random.")
    weights: Weights = Field(default_factory=Weights, description='JSON, e.g. {"utilization": 0.5}.')
    limits: Limits = Field(default_factory=Limits)
    retry_no_worker_s: float = Field(
        default=0.25, gt=0, description="First wait before retrying when no worker fits; doubles each time."
    )
    retry_max_s: float = Field(default=1.0, gt=0, description="Longest wait between such retries.")
    max_deliver: int = Field(
        default=200, ge=2, description="Deliveries of a request before it goes to dead letters (`dead.<modality>`)."
    )
    ack_wait_s: float = Field(default=10.0, gt=0)
    crash_loop_restarts: int = Field(default=3, ge=1, description="Restarts within the window = crash loop.")
    crash_loop_window_s: float = Field(default=300.0, gt=0)
    catalog_file: Path | None = Field(
        default=None,
        description="The model catalog (YAML), mirrored into the `models` bucket and re-read when it changes.",
    )
    fallback_after_s: float = Field(
        default=2.0,
        ge=0,
        description="A request waiting this long for a model "
        "that names a fallback in the catalog goes to the fallback, if it has room.",
    )
    placement_interval_s: float = Field(default=2.0, gt=0, description="How often the placement controller plans.")
    placement_grace_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a load or unload command counts as under way before it may be sent again.",
    )
    aging_s: float = Field(
        default=10.0,
        ge=0,
        description="Waiting this long lifts a request one priority class "
        "(batch to interactive to realtime), so none starves; 0: never.",
    )
    max_waiting: int = Field(
        default=10_000,
        ge=1,
        description="Requests one scheduler holds while they wait for "
        "a slot (JetStream's max_ack_pending for its consumer).",
    )
    max_attempts: int = Field(default=3, ge=1, description="Tries per request before it fails (failover).")
    webhook_url: str | None = Field(default=None, description="POST fleet alerts here as JSON.")
