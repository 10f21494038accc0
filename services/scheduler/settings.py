"""Scheduler settings (env prefix MODALMESH_SCHEDULER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_SCHEDULER_", extra="ignore")

    retry_no_worker_s: float = Field(default=0.25, gt=0, description="Wait before retrying when no worker fits.")
    ack_wait_s: float = Field(default=10.0, gt=0)
