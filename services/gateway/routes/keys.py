"""The admin API's keys: make one (its secret shown once), list them (never a secret), revoke one."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from contracts.base import now_ms
from contracts.errors import InvalidRequest, ModelNotFound
from contracts.keys import ManagedKey
from contracts.requests import Priority
from services.gateway.keys import KeyStore

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


class KeyBody(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    # `user` is the API's word for the ring's `full` scope: every route but the admin API.
    scope: Literal["admin", "user", "full", "read"] = "user"
    models: list[str] | None = Field(default=None, description="Models the key may use; absent: every model.")
    priority: Priority | None = Field(default=None, description="Class of its requests that name none.")
    expires_in_s: int | None = Field(default=None, ge=1, description="Seconds until the key stops working.")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute (prompt estimate + max_tokens).")
    tokens_per_day: int | None = Field(default=None, ge=1, description="Quota: tokens a UTC day.")
    tokens_per_month: int | None = Field(default=None, ge=1, description="Quota: tokens a UTC calendar month.")
    cache: bool = Field(default=True, description="Whether its fixed answers may come from the response cache.")


class KeyNotFound(ModelNotFound):
    """404 in the OpenAI shape."""


def shown(key: ManagedKey) -> dict[str, Any]:
    return {"object": "api_key", **key.model_dump(mode="json", exclude={"schema_version"})}


def _store(request: Request) -> KeyStore:
    return request.app.state.key_store


@router.post("", status_code=201)
async def create_key(body: KeyBody, request: Request) -> dict[str, Any]:
    if body.models is not None and not body.models:
        raise InvalidRequest("`models` must name at least one model, or be left out for every model", param="models")
    secret, key = await _store(request).create(
        name=body.name,
        scope="full" if body.scope == "user" else body.scope,
        models=body.models,
        priority=body.priority,
        expires_at_ms=None if body.expires_in_s is None else now_ms() + body.expires_in_s * 1000,
        rpm=body.rpm,
        tpm=body.tpm,
        tokens_per_day=body.tokens_per_day,
        tokens_per_month=body.tokens_per_month,
        cache=body.cache,
    )
    return {**shown(key), "key": secret}


@router.get("")
async def list_keys(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [shown(k) for k in _store(request).listed()]}


@router.delete("/{key_id}")
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    key = await _store(request).revoke(key_id)
    if key is None:
        raise KeyNotFound(f"No key with id `{key_id}`", param="key_id")
    return {"object": "api_key.deleted", "id": key.id, "name": key.name, "deleted": True}
