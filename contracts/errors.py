"""Failure kinds shared by every service; the gateway maps each once to HTTP status and OpenAI shape."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    invalid_request = "invalid_request"
    model_not_found = "model_not_found"
    no_live_worker = "no_live_worker"
    deadline_exceeded = "deadline_exceeded"
    cancelled = "cancelled"
    engine_error = "engine_error"
    unauthenticated = "invalid_api_key"
    permission_denied = "permission_denied"
    payload_too_large = "payload_too_large"
    overloaded = "overloaded"
    bus_unavailable = "bus_unavailable"


class ModalMeshError(Exception):
    """A failure that has a code every service and client understands."""

    code: ErrorCode = ErrorCode.engine_error

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, when one is (OpenAI's error `param`)


class InvalidRequest(ModalMeshError):
    code = ErrorCode.invalid_request


class ModelNotFound(ModalMeshError):
    code = ErrorCode.model_not_found


class NoLiveWorker(ModalMeshError):
    code = ErrorCode.no_live_worker


class DeadlineExceeded(ModalMeshError):
    code = ErrorCode.deadline_exceeded


class EngineError(ModalMeshError):
    code = ErrorCode.engine_error


class Unauthenticated(ModalMeshError):
    code = ErrorCode.unauthenticated


class PermissionDenied(ModalMeshError):
    code = ErrorCode.permission_denied


class PayloadTooLarge(ModalMeshError):
    code = ErrorCode.payload_too_large


class Overloaded(ModalMeshError):
    code = ErrorCode.overloaded


class BusUnavailable(ModalMeshError):
    """NATS did not confirm a request was stored (an outage): the client should retry shortly."""

    code = ErrorCode.bus_unavailable


_BY_CODE: dict[ErrorCode, type[ModalMeshError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        ModelNotFound,
        NoLiveWorker,
        DeadlineExceeded,
        EngineError,
        Unauthenticated,
        PermissionDenied,
        PayloadTooLarge,
        Overloaded,
        BusUnavailable,
    )
}


def error_for(code: ErrorCode, message: str, param: str | None = None) -> ModalMeshError:
    """The exception that a bus error code stands for."""
    return _BY_CODE.get(code, ModalMeshError)(message, param)
