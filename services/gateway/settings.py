"""Gateway settings (env prefix MODALMESH_GATEWAY_)."""

from __future__ import annotations

from pathlib import Path

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
    api_keys: list[str] = Field(default_factory=list, description="Plain API keys (JSON list); hashed at start.")
    api_keys_file: Path | None = Field(default=None, description="File of `<sha256> [name] [scope]` lines.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Larger bodies get 413.")
    max_messages: int = Field(default=256, ge=1)
    max_prompt_chars: int = Field(default=200_000, ge=1, description="Characters over all messages or the prompt.")
    max_tokens_limit: int = Field(default=8192, ge=1, description="Largest `max_tokens` a client may ask for.")
    max_embedding_inputs: int = Field(default=2048, ge=1, description="Texts in one embeddings request.")
    max_image_pixels: int = Field(default=1024 * 1024, ge=64, description="Largest width x height of images, videos.")
    max_images: int = Field(default=8, ge=0, description="Images in one chat request.")
    max_image_bytes: int = Field(default=512 * 1024, ge=1024, description="Bytes of one image in a chat message.")
    max_image_side: int = Field(default=2048, ge=16, description="Pixels of the longer side of such an image.")
    url_secret: str = Field(default="", description="Signs file URLs; unset: a random one per gateway process.")
    url_ttl_s: int = Field(default=3600, ge=1, description="How long a signed file URL stays valid.")
    max_inflight_per_model: int = Field(default=512, ge=1, description="Beyond this, 429 with Retry-After.")
    # Off unless asked for: the benchmarks and load generators send the same seeded requests again
    # and again to measure the engines, and would measure the cache.
    response_cache: bool = Field(default=False, description="Answer repeated fixed requests from the `cache` bucket.")
