"""The aggregator's record of how requests ended, in a KV bucket on a real nats-server."""

from __future__ import annotations

import asyncio
import uuid

from contracts.results import Usage
from contracts.tasks import TaskState, TaskStatus
from services.aggregator.store import TaskWriter
from services.common.bus import Bus


async def test_a_state_nats_cannot_store_for_a_moment_is_written_once_it_can(bus: Bus) -> None:
    """The write of a final state finds no stream to take it (as while JetStream restarts): the writer
    tries it again until the bucket is back, instead of logging it and dropping it, and writes the
    states after it too."""
    bucket = f"tasks-{uuid.uuid4().hex[:8]}"
    kv = await bus.js.create_key_value(bucket=bucket)
    writer = TaskWriter(kv, retry_s=20.0)
    writing = asyncio.create_task(writer.run())
    done = TaskState(
        request_id="chatcmpl-outage",
        status=TaskStatus.completed,
        text="every word",
        usage=Usage(completion_tokens=2),
        finish_reason="stop",
    )
    after = TaskState(request_id="chatcmpl-after", status=TaskStatus.running, text="so far")
    try:
        await bus.js.delete_key_value(bucket)
        writer.put(done)
        writer.put(after)
        await asyncio.sleep(1.0)  # a few attempts go unanswered
        await bus.js.create_key_value(bucket=bucket)
        await writer.close(timeout_s=15)
        assert writing.done()  # the queue was worked through to its end
        for state in (done, after):
            entry = await kv.get(state.request_id)
            assert TaskState.decode(entry.value or b"") == state
    finally:
        writing.cancel()
        await bus.js.delete_key_value(bucket)
