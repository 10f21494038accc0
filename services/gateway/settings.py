"""Gateway settings (env prefix MODALMESH_GATEWAY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    request_timeout_s: float = Field(default=120.0, gt=0, description="Default deadline of a request.")
    max_timeout_s: float = Field(default=3600.0, gt=0, description="Largest deadline a client may ask for.")
    default_max_tokens: int = Field(default=256, ge=1)
