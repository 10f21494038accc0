"""Bus chat messages as the OpenAI-shaped dicts that llama-cpp-python's handlers and every
OpenAI-compatible server take."""

from __future__ import annotations

from typing import Any

from contracts.requests import ChatMessage, ChatRequest, Tool


def openai_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in message.images]
        out["content"] = [*parts, {"type": "text", "text": message.content}]
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def openai_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """Tools in OpenAI's request shape."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def openai_messages(request: ChatRequest, resume_text: str = "") -> list[dict[str, Any]]:
    """The conversation; after a failover, the text already delivered is the start of the assistant's turn."""
    messages = [openai_message(m) for m in request.messages]
    if resume_text:
        messages.append({"role": "assistant", "content": resume_text})
    return messages
