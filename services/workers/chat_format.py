"""Bus chat messages as the OpenAI-shaped dicts that llama-cpp-python's handlers and every
OpenAI-compatible server take."""

from __future__ import annotations

from typing import Any

from contracts.requests import ChatMessage, ChatRequest


def openai_message(message: ChatMessage) -> dict[str, Any]:
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in message.images]
    return {"role": message.role, "content": [*parts, {"type": "text", "text": message.content}]}


def openai_messages(request: ChatRequest, resume_text: str = "") -> list[dict[str, Any]]:
    """The conversation; after a failover, the text already delivered is the start of the assistant's turn."""
    messages = [openai_message(m) for m in request.messages]
    if resume_text:
        messages.append({"role": "assistant", "content": resume_text})
    return messages
