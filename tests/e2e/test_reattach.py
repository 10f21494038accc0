"""A gateway killed in the middle of a streamed answer: the answer goes on without it, and the client
re-attaches to the restarted gateway with `Last-Event-ID` and gets exactly the rest."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest

from contracts.tasks import TaskStatus
from services.devstack import LocalStack
from tests.e2e.test_http import HELLO, MODEL, NO_EOS, task_state

pytestmark = pytest.mark.e2e


def _events(lines: list[str]) -> list[tuple[str | None, str]]:
    """(id, data) of each SSE event in `lines`."""
    events, event_id = [], None
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, line[6:]))
            event_id = None
    return events


def _text(events: list[tuple[str | None, str]]) -> str:
    out = []
    for _, data in events:
        if data != "[DONE]":
            choices = json.loads(data).get("choices") or [{}]
            out.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(out)


def test_reattach_after_the_gateway_is_killed(running_stack: LocalStack) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 400, "stream": True, "logit_bias": NO_EOS}
    seen: list[str] = []
    with httpx.stream(
        "POST", f"{running_stack.url}/v1/chat/completions", json=body, headers=running_stack.headers, timeout=60
    ) as res:
        for line in res.iter_lines():
            seen.append(line)
            if sum(1 for e in _events(seen) if e[0] is not None) >= 5:
                [gateway] = running_stack.service_pids("services.gateway")
                os.kill(gateway, signal.SIGKILL)  # mid-stream, as a crash would
                break
    before = _events(seen)
    request_id = json.loads(before[0][1])["id"]
    last_id = [e for e in before if e[0] is not None][-1][0]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # supervisord restarts it
        try:
            if httpx.get(f"{running_stack.url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    rest: list[str] = []
    with httpx.stream(
        "GET",
        f"{running_stack.url}/v1/chat/completions/{request_id}/events",
        headers={**running_stack.headers, "Last-Event-ID": str(last_id)},
        timeout=60,
    ) as res:
        assert res.status_code == 200
        rest = list(res.iter_lines())
    after = _events(rest)
    assert after[-1][1] == "[DONE]"
    ids = [int(i) for i, _ in after if i is not None]
    assert ids and ids[0] == int(str(last_id)) + 1 and ids == sorted(set(ids))  # the rest, nothing twice

    state = asyncio.run(task_state(running_stack.nats_url, request_id))
    assert state.status is TaskStatus.completed  # the killed gateway cancelled nothing
    assert _text(before) + _text(after) == state.text  # every token once, none missing


def test_reattach_to_an_unknown_stream_is_404(running_stack: LocalStack) -> None:
    for rid in ("chatcmpl-nothing-here", "bad%20id"):
        res = httpx.get(f"{running_stack.url}/v1/chat/completions/{rid}/events", headers=running_stack.headers)
        assert res.status_code == 404
