"""The fleet in containers, used from the host through the ports compose publishes on 127.0.0.1: a
streamed chat, each NATS role kept to its subjects, Prometheus scraping every service, a worker's
container killed mid-answer, and NATS restarted with a task queued."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from typing import Any

import httpx
import nats
import pytest
from nats.errors import Error as NatsError
from openai import OpenAI

from services.natsauth import ROLES
from tests.compose.fleet import ComposeFleet

pytestmark = pytest.mark.docker
MODEL = "tiny-llama"
LONG = 1200  # tokens: a stream long enough to kill its worker in the middle of it


def client(fleet: ComposeFleet) -> OpenAI:
    return OpenAI(base_url=fleet.api, api_key=fleet.api_key, max_retries=0, timeout=120)


def stream_chat(fleet: ComposeFleet, max_tokens: int, on_token: Any = None) -> tuple[str, set[str]]:
    """The streamed answer's text and the workers that sent it (system_fingerprint)."""
    text, workers = [], set()
    chunks = client(fleet).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a long story about containers."}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    for n, chunk in enumerate(chunks):
        if chunk.system_fingerprint:
            workers.add(chunk.system_fingerprint)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if on_token is not None:
            on_token(n, chunk)
    return "".join(text), workers


def test_a_streamed_chat_through_the_openai_client(fleet: ComposeFleet) -> None:
    text, workers = stream_chat(fleet, 16)
    assert text and len(workers) == 1


def test_the_gateway_image_serves_the_console_it_built(fleet: ComposeFleet) -> None:
    page = httpx.get(fleet.api.removesuffix("/v1") + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["content-security-policy"] == "default-src 'self'"
    scripts = re.findall(r'src="(/assets/[^"]+\.js)"', page.text)
    assert scripts, page.text[:500]
    script = httpx.get(fleet.api.removesuffix("/v1") + scripts[0], timeout=10)
    assert script.status_code == 200 and len(script.content) > 1000


def _forbidden_subject(role: str) -> str:
    """An application subject another role may publish and this one may not."""
    own = ROLES[role].publish
    for other in ROLES.values():
        for subject in other.publish:
            if subject not in own and not subject.startswith(("$", "_")):
                return subject.replace(">", "x").replace("*", "x")
    raise AssertionError(role)


async def _publish_refused(url: str, subject: str) -> bool:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False, connect_timeout=5)
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return any("permissions violation" in str(e).lower() for e in errors)


async def test_each_nats_role_is_refused_outside_its_subjects(fleet: ComposeFleet) -> None:
    for role in ROLES:
        subject = _forbidden_subject(role)
        assert await _publish_refused(fleet.nats_url(role), subject), f"{role} may publish {subject}"
        own = ROLES[role].publish[0].replace(">", "x").replace("*", "x")
        assert not await _publish_refused(fleet.nats_url(role), own), f"{role} is refused its own {own}"
    with pytest.raises((NatsError, OSError)):
        await nats.connect(fleet.nats_url("gateway", "wrong"), allow_reconnect=False, connect_timeout=5)


def test_prometheus_scrapes_every_service(fleet: ComposeFleet) -> None:
    url = f"http://127.0.0.1:{fleet.env['MODALMESH_PROMETHEUS_PORT']}/api/v1/targets"
    want = {"gateway": 1, "scheduler": 1, "aggregator": 1, "monitor": 1, "worker-cpu": 2}
    deadline = time.monotonic() + 90
    while True:
        targets = httpx.get(url, timeout=5).json()["data"]["activeTargets"]
        up: dict[str, int] = {}
        for target in targets:
            if target["health"] == "up":
                up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
        if all(up.get(job, 0) >= n for job, n in want.items()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert all(up.get(job, 0) >= n for job, n in want.items()), (up, targets)


def test_a_worker_container_killed_mid_answer_loses_no_token(fleet: ComposeFleet) -> None:
    reference, _ = stream_chat(fleet, LONG)
    killed: list[str] = []

    def kill_its_worker(n: int, chunk: Any) -> None:
        if n == 20 and chunk.system_fingerprint:
            container = chunk.system_fingerprint.removeprefix("cpu-")  # the id is cpu-<hostname>
            subprocess.run(["docker", "kill", container], check=True, capture_output=True)
            killed.append(chunk.system_fingerprint)

    text, workers = stream_chat(fleet, LONG, kill_its_worker)
    assert killed, "the answer ended before its worker could be killed"
    assert len(workers) == 2, f"the answer did not move to the other worker: {workers}"
    assert text == reference  # nothing lost, nothing repeated: the continuation is the same greedy text
    fleet.compose("up", "-d", "--wait", "--scale", "worker-cpu=2", "worker-cpu")  # the killed one back
    fleet.wait_for_model(MODEL, live=2)


def test_nats_restarted_with_a_task_queued_and_the_task_completes(fleet: ComposeFleet) -> None:
    headers = {"Authorization": f"Bearer {fleet.api_key}"}
    body = {"modality": "chat", "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    fleet.compose("pause", "worker-cpu")  # nothing serves it: the task waits in the queue
    try:
        task = httpx.post(f"{fleet.api}/tasks", json=body, headers=headers, timeout=30).json()
        assert task["status"] == "queued", task
        fleet.compose("restart", "nats")
    finally:
        fleet.compose("unpause", "worker-cpu")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            state = httpx.get(f"{fleet.api}/tasks/{task['id']}", headers=headers, timeout=10).json()
        except httpx.HTTPError:
            state = {}
        if state.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(1)
    assert state.get("status") == "completed", state
