"""API keys an admin creates at run time, as kept (hashed) in the `keys` bucket under their digest, and
what each finished request of a key used, as recorded on the USAGE stream."""

from __future__ import annotations

from pydantic import Field

from contracts.base import Message
from contracts.requests import Priority


class ManagedKey(Message):
    """One key made through `POST /v1/admin/keys`: its sha256 digest is the bucket key, never the key."""

    id: str = Field(description="Public handle for listing and revoking (`key_` and the digest's first 16 hex).")
    name: str
    scope: str = "full"
    models: list[str] | None = Field(default=None, description="Models the key may use; None: every model.")
    priority: Priority | None = None
    expires_at_ms: int | None = None
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute, shared by every gateway.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute (prompt + max_tokens reserved).")
    tokens_per_day: int | None = Field(default=None, ge=1, description="Quota: tokens (prompt + completion) a UTC day.")
    tokens_per_month: int | None = Field(default=None, ge=1, description="Quota: tokens a UTC calendar month.")
    cache: bool = Field(default=True, description="Whether its fixed answers may come from the response cache.")
    created_at_ms: int = 0


class UsageRecord(Message):
    """One finished request of one key, on `usage.<key id>` under its request id (counted once)."""

    request_id: str
    key_id: str
    key_name: str
    model: str
    modality: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finished_ms: int
