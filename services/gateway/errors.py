"""Every failure, mapped once to an HTTP status and OpenAI's error shape."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import ErrorCode, ModalMeshError

STATUS: dict[ErrorCode, int] = {
    ErrorCode.invalid_request: 400,
    ErrorCode.model_not_found: 404,
    ErrorCode.no_live_worker: 503,
    ErrorCode.deadline_exceeded: 504,
    ErrorCode.cancelled: 499,
    ErrorCode.engine_error: 500,
    ErrorCode.unauthenticated: 401,
    ErrorCode.permission_denied: 403,
    ErrorCode.payload_too_large: 413,
    ErrorCode.overloaded: 429,
    ErrorCode.bus_unavailable: 503,
}
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
    500: "server_error",
}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, object]:
    return {
        "error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param, "code": code}
    }


def error_response(exc: ModalMeshError, retry_after_s: float | None = None) -> JSONResponse:
    status = STATUS.get(exc.code, 500)
    headers = {"Retry-After": str(math.ceil(retry_after_s))} if retry_after_s and status in (429, 503) else None
    headers = getattr(exc, "headers", None) or headers  # a rate limit's own (services.gateway.ratelimit)
    return JSONResponse(error_body(status, exc.message, exc.code.value, exc.param), status_code=status, headers=headers)


def install(app: FastAPI, retry_after_s: float) -> None:
    @app.exception_handler(ModalMeshError)
    async def _domain(_: Request, exc: ModalMeshError) -> JSONResponse:
        return error_response(exc, retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg", "invalid request body"))
        return JSONResponse(error_body(400, message, ErrorCode.invalid_request.value, param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
