"""Settings every service has. Each service subclasses it with its own env prefix; these shared
fields keep their one name (MODALMESH_NATS_URL, ...) whatever the service's prefix."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _shared(name: str) -> AliasChoices:
    return AliasChoices(f"MODALMESH_{name.upper()}", name)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_", extra="ignore", populate_by_name=True)

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=_shared("nats_url"),
        description="NATS server(s), comma separated.",
    )
    node: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0],
        validation_alias=_shared("node"),
        description="This host's name in the fleet.",
    )
    heartbeat_s: float = Field(
        default=1.0, gt=0, validation_alias=_shared("heartbeat_s"), description="How often workers announce themselves."
    )
    dead_after_s: float = Field(
        default=3.0, gt=0, validation_alias=_shared("dead_after_s"), description="Missing heartbeats this long = gone."
    )
    nats_replicas: int = Field(
        default=0,
        ge=0,
        validation_alias=_shared("nats_replicas"),
        description="Copies of each stream and bucket; 0: three on a NATS cluster of three or more, else one.",
    )
    log_level: str = Field(default="INFO", validation_alias=_shared("log_level"))
    domains_file: Path | None = Field(
        default=None,
        validation_alias=_shared("domains_file"),
        description="The resource domains' YAML file (services/common/domains.py); unset: no caps or shares.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=_shared("metrics_port"),
        description="Port of this service's Prometheus /metrics (none: not served).",
    )


class CacheSettings(BaseSettings):
    """Where the models the project writes itself (the tiny test and demo models) are kept."""

    model_config = SettingsConfigDict(env_prefix="MODALMESH_", extra="ignore")

    cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "modalmesh",
        description="MODALMESH_CACHE: the folder; its models/ holds the tiny models, written on first use.",
    )
