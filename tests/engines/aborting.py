"""For engine tests: stream a request and abort it after a few deltas, as a client that goes away."""

from __future__ import annotations

from contracts.requests import AnyRequest
from services.workers.engine import Engine, Finished, TextDelta


async def abort_after(engine: Engine, request: AnyRequest, deltas: int) -> tuple[list[str], Finished | None]:
    """The texts streamed (the abort is asked for after `deltas` of them) and the Finished event."""
    texts: list[str] = []
    final = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            texts.append(event.text)
            if len(texts) == deltas:
                await engine.abort(request.request_id)
        elif isinstance(event, Finished):
            final = event
    return texts, final
