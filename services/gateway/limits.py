"""Limits on what one request may ask for: body size (413), messages, prompt length, max_tokens (400)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.errors import InvalidRequest
from contracts.requests import (
    AnyRequest,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    RerankRequest,
    SpeechRequest,
    TranscriptionRequest,
    VideoRequest,
)
from services.gateway.errors import error_body
from services.gateway.settings import GatewaySettings


def check_request(request: AnyRequest, settings: GatewaySettings) -> None:
    if isinstance(request, ChatRequest):
        if len(request.messages) > settings.max_messages:
            raise InvalidRequest(f"at most {settings.max_messages} messages per request")
        chars = sum(len(m.content) for m in request.messages)
    elif isinstance(request, CompletionRequest):
        chars = len(request.prompt)
    elif isinstance(request, EmbeddingRequest):
        if len(request.inputs) > settings.max_embedding_inputs:
            raise InvalidRequest(f"at most {settings.max_embedding_inputs} inputs per embeddings request")
        chars = max(len(text) for text in request.inputs)
    elif isinstance(request, (ImageRequest, VideoRequest)):
        if request.width * request.height > settings.max_image_pixels:
            raise InvalidRequest(
                f"{request.width}x{request.height} is over the limit of {settings.max_image_pixels} pixels"
            )
        chars = len(request.prompt)
    elif isinstance(request, SpeechRequest):
        chars = len(request.input)
    elif isinstance(request, RerankRequest):
        if len(request.documents) > settings.max_embedding_inputs:
            raise InvalidRequest(f"at most {settings.max_embedding_inputs} documents per rerank request")
        chars = len(request.query) + max(len(text) for text in request.documents)
    elif isinstance(request, TranscriptionRequest):
        chars = len(request.prompt)
    if chars > settings.max_prompt_chars:
        raise InvalidRequest(f"the prompt has {chars} characters; the limit is {settings.max_prompt_chars}")
    if request.sampling.max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(f"max_tokens may be at most {settings.max_tokens_limit}")


class BodySizeLimit:
    """Answers 413 to a body over `max_bytes`, whether it announces its length or streams it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        import json

        body = json.dumps(error_body(413, f"request body over {self.max_bytes} bytes", "payload_too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
