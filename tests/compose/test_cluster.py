"""Three NATS servers in a cluster (docker-compose.cluster.yml): one is killed under a steady stream
of chats and tasks, then started again. Every accepted chat ends whole and once, every accepted task
completes, and the chats go on; the longest pause a client saw is reported."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import nats
import pytest
from openai import APIStatusError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.compose.conftest import WORKDIR
from tests.compose.fleet import ComposeFleet

pytestmark = pytest.mark.docker
MODEL = "tiny-llama"
PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count the servers."}]
TOKENS = 24


@pytest.fixture(scope="module")
def cluster() -> Iterator[ComposeFleet]:
    workdir = WORKDIR / "cluster"
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = ComposeFleet(
        project="modalmesh-cluster", workdir=workdir, files=("docker-compose.yml", "docker-compose.cluster.yml")
    )
    fleet.compose("down", "-v", "--remove-orphans", check=False)
    try:
        fleet.up("nats", "nats-2", "nats-3", "gateway", "scheduler", "aggregator", "worker-cpu")
        fleet.wait_for_model(MODEL)
        yield fleet
    finally:
        fleet.down()


@dataclass
class Load:
    """Chats one after another and a task every second, recording what came back."""

    fleet: ComposeFleet
    reference: str
    stop: threading.Event = field(default_factory=threading.Event)
    chats: list[str] = field(default_factory=list)  # outcome of each accepted chat: "whole" or what went wrong
    refused: list[int] = field(default_factory=list)  # statuses of chats refused before they were accepted
    tasks: list[str] = field(default_factory=list)
    last_token: float = field(default_factory=time.monotonic)
    longest_pause_s: float = 0.0

    def chat_loop(self) -> None:
        client = OpenAI(base_url=self.fleet.api, api_key=self.fleet.api_key, max_retries=0, timeout=60)
        while not self.stop.is_set():
            try:
                stream = client.chat.completions.create(
                    model=MODEL, messages=PROMPT, max_tokens=TOKENS, temperature=0, stream=True
                )  # a Stream of ChatCompletionChunk
            except APIStatusError as exc:
                self.refused.append(exc.status_code)
                time.sleep(0.2)
                continue
            text = []
            try:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        now = time.monotonic()
                        self.longest_pause_s = max(self.longest_pause_s, now - self.last_token)
                        self.last_token = now
                        text.append(chunk.choices[0].delta.content)
                self.chats.append("whole" if "".join(text) == self.reference else f"differs: {''.join(text)!r}")
            except Exception as exc:  # an accepted chat that broke: the test fails on it
                self.chats.append(f"broke: {exc!r}")

    def task_loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.fleet.api_key}"}
        body = {"modality": "chat", "model": MODEL, "max_tokens": 8, "messages": PROMPT}
        while not self.stop.is_set():
            try:
                res = httpx.post(f"{self.fleet.api}/tasks", json=body, headers=headers, timeout=30)
                if res.status_code == 202:
                    self.tasks.append(res.json()["id"])
            except httpx.HTTPError:
                pass
            self.stop.wait(1.0)


def _reference(fleet: ComposeFleet) -> str:
    client = OpenAI(base_url=fleet.api, api_key=fleet.api_key, max_retries=0, timeout=60)
    reply = client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=TOKENS, temperature=0)
    return reply.choices[0].message.content or ""


async def test_the_streams_have_three_replicas(cluster: ComposeFleet) -> None:
    nc = await nats.connect(cluster.nats_url("admin"))
    try:
        info = await nc.jetstream().stream_info("REQUESTS")
    finally:
        await nc.close()
    assert info.config.num_replicas == 3 and info.cluster is not None and len(info.cluster.replicas or []) == 2


def test_a_nats_server_dies_under_load_and_nothing_is_lost(cluster: ComposeFleet) -> None:
    load = Load(cluster, _reference(cluster))
    threads = [threading.Thread(target=load.chat_loop), threading.Thread(target=load.task_loop)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(8)
        cluster.compose("kill", "nats")  # the first member, which the bootstrap and many clients chose
        time.sleep(10)
        cluster.compose("start", "nats")
        time.sleep(12)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(90)
    headers = {"Authorization": f"Bearer {cluster.api_key}"}
    deadline = time.monotonic() + 120
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for task in load.tasks:
            if states.get(task) != "completed":
                res = httpx.get(f"{cluster.api}/tasks/{task}", headers=headers, timeout=10)
                states[task] = res.json().get("status", str(res.status_code))
        if all(s == "completed" for s in states.values()):
            break
        time.sleep(1)
    report = {
        "chats_accepted": len(load.chats),
        "chats_whole": load.chats.count("whole"),
        "chats_refused": len(load.refused),
        "refused_statuses": {str(code): load.refused.count(code) for code in sorted(set(load.refused))},
        "tasks_accepted": len(load.tasks),
        "tasks_completed": sum(s == "completed" for s in states.values()),
        "longest_pause_s": round(load.longest_pause_s, 3),
    }
    (WORKDIR / "cluster-report.json").write_text(json.dumps(report, indent=2))
    print("cluster:", json.dumps(report))
    assert load.chats and all(c == "whole" for c in load.chats), [c for c in load.chats if c != "whole"][:5]
    assert load.tasks and report["tasks_completed"] == len(load.tasks), states
