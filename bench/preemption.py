"""The preemption scenario, scripted: a priority-9 model arrives on a full host held by a priority-3 one.

One host worker may fill 100 MB (on a GPU node it would be the GPU's memory). It holds `low-chat`
(priority 3, 80 MB, one warm replica), which is streaming a long answer. Then `high-chat` (priority
9, 80 MB, one warm replica) is added to the catalog file while everything runs. What must happen:

1. the placement controller pushes `low-chat` out (state `preempted`, reason `preempted by
   high-chat`) and loads `high-chat`, which answers;
2. the answer `low-chat` was streaming is cut off at the worker's drain timeout, handed back and
   re-queued, not dropped: it waits in the scheduler while `high-chat` holds the memory;
3. when the operator unloads `high-chat` (admin API), `low-chat` is placed again and the waiting
   answer finishes, continuing after the text already delivered, on the same HTTP stream;
4. at no point is a model pushed out by one of equal or lower priority.

Every model state the admin API shows is recorded as it changes. Writes .data/bench/preemption.json
and a timeline plot beside it (preemption.png), and prints the timeline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import sse_json, write_report
from services.common.runtime import run
from services.devstack import LocalStack
from services.workers.tiny_model import BENCH_SPEC, ensure_tiny_gguf

HOST_MEMORY_MB = 100
DRAIN_TIMEOUT_S = 2.0  # an unloaded model's answers in flight get this long to finish, then are handed back
ENTRY = (
    "{{engine: llama_cpp, source: '{source}', modality: [chat], memory_mb: 80, priority: {priority}, "
    "min_replicas: 1, options: {{n_threads: 1}}}}"
)
MODELS = ("low-chat", "high-chat")
LONG_ANSWER = {
    "model": "low-chat",
    "stream": True,
    "temperature": 0,
    "logit_bias": {"2": -100, "4": -100},  # no end of text: it runs to max_tokens
    "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
}


def catalog(source: Path, *, high: bool) -> str:
    lines = ["models:", f"  low-chat: {ENTRY.format(source=source, priority=3)}"]
    if high:
        lines.append(f"  high-chat: {ENTRY.format(source=source, priority=9)}")
    return "\n".join(lines) + "\n"


@dataclass
class Timeline:
    """The models' states as the admin API shows them, recorded when they change, and the scenario's
    own steps, in seconds from the start."""

    client: httpx.AsyncClient
    started: float = field(default_factory=time.monotonic)
    states: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)  # requests waiting in the schedulers, as it changes
    now: dict[str, dict[str, Any]] = field(default_factory=dict)

    def at(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def step(self, what: str) -> float:
        self.steps.append({"t_s": self.at(), "step": what})
        print(f"{self.at():8.2f}s  -- {what}")
        return self.at()

    async def follow(self) -> None:
        while True:
            res = await self.client.get("/v1/admin/models")
            for model in res.json()["data"]:
                if model["id"] not in MODELS:
                    continue
                state = {
                    "model": model["id"],
                    "state": model["state"],
                    "reason": model["reason"],
                    "priority": model["priority"],
                }
                if self.now.get(model["id"]) != state:
                    self.now[model["id"]] = state
                    self.states.append({"t_s": self.at(), **state})
                    print(f"{self.at():8.2f}s  {model['id']:<10} {model['state']:<10} {model['reason']}")
            queues = (await self.client.get("/v1/admin/queues")).json()
            waiting = sum(d["waiting"] for d in queues["data"])
            if waiting != (self.waiting[-1]["waiting"] if self.waiting else 0):
                self.waiting.append({"t_s": self.at(), "waiting": waiting})
                print(f"{self.at():8.2f}s  requests waiting in the schedulers: {waiting}")
            await asyncio.sleep(0.1)

    async def until(self, model: str, state: str, timeout_s: float = 120) -> float:
        deadline = time.monotonic() + timeout_s
        while self.now.get(model, {}).get("state") != state:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{model} was not {state} within {timeout_s:.0f} s: {self.now}")
            await asyncio.sleep(0.05)
        return self.at()

    def first(self, model: str, state: str, after_s: float = 0.0) -> float | None:
        return next(
            (s["t_s"] for s in self.states if s["model"] == model and s["state"] == state and s["t_s"] >= after_s), None
        )

    def upward_preemptions(self) -> list[dict[str, Any]]:
        """Every preemption by a model of equal or lower priority than the one it pushed out."""
        priority = {s["model"]: s["priority"] for s in self.states}
        return [
            s
            for s in self.states
            if s["state"] == "preempted"
            and s["reason"].startswith("preempted by ")
            and priority.get(s["reason"].removeprefix("preempted by "), 0) <= s["priority"]
        ]


@dataclass
class Answer:
    """A streamed chat, read to its end: the text, the finish reason and when its first text came."""

    text: str = ""
    finish_reason: str | None = None
    events: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"X-ModalMesh-Timeout": "300"}
        ) as res:
            res.raise_for_status()
            async for chunk in sse_json(res):
                if "error" in chunk:
                    raise RuntimeError(f"the answer ended in an error: {chunk['error']}")
                choice = chunk["choices"][0]
                if content := choice["delta"].get("content"):
                    self.text += content
                    self.events += 1
                    self.started.set()
                self.finish_reason = choice.get("finish_reason") or self.finish_reason


@contextlib.contextmanager
def preemption_stack(folder: Path) -> Iterator[tuple[LocalStack, Path, Path]]:
    """The stack, its catalog file (low-chat only) and the model file both entries load."""
    source = ensure_tiny_gguf(BENCH_SPEC)  # slow enough (about 130 tokens/s) to be mid-answer when preempted
    catalog_file = folder / "catalog.yaml"
    catalog_file.write_text(catalog(source, high=False))
    env = {
        "MODALMESH_HOST_MEMORY_MB": str(HOST_MEMORY_MB),
        "MODALMESH_SCHEDULER_CATALOG_FILE": str(catalog_file),
        "MODALMESH_WORKER_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        "MODALMESH_LOG_LEVEL": "WARNING",
    }
    with LocalStack(data=folder / "stack", env=env) as stack:
        yield stack, catalog_file, source


async def scenario(stack: LocalStack, catalog_file: Path, source: Path, max_tokens: int = 1500) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=300, headers=stack.headers) as client:
        timeline = Timeline(client)
        following = asyncio.create_task(timeline.follow())
        reading: asyncio.Task[None] | None = None
        try:
            await timeline.until("low-chat", "running")
            timeline.step("a client streams a long answer from low-chat")
            answer = Answer()
            reading = asyncio.create_task(answer.read(client, {**LONG_ANSWER, "max_tokens": max_tokens}))
            await asyncio.wait_for(answer.started.wait(), 60)
            text_before = len(answer.text)
            edited = timeline.step("catalog file: high-chat (priority 9) added, no restart")
            await asyncio.to_thread(catalog_file.write_text, catalog(source, high=True))
            high_running = await timeline.until("high-chat", "running")
            timeline.step("high-chat running: a client asks it")
            asked = time.monotonic()
            reply = await client.post(
                "/v1/chat/completions",
                json={"model": "high-chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            )
            reply.raise_for_status()
            high_answer_s = time.monotonic() - asked
            timeline.step(f"high-chat answered in {high_answer_s:.2f} s")
            unloaded = timeline.step("operator: POST /v1/admin/models/high-chat/unload")
            (await client.post("/v1/admin/models/high-chat/unload")).raise_for_status()
            await asyncio.wait_for(reading, 300)
            finished = timeline.step(f"low-chat's answer finished: {answer.finish_reason}, {answer.events} text events")
        finally:
            following.cancel()
            if reading is not None:
                reading.cancel()
    preempted = timeline.first("low-chat", "preempted", after_s=edited)
    back = timeline.first("low-chat", "running", after_s=unloaded)
    return {
        "low_preempted_after_s": round(preempted - edited, 3) if preempted is not None else None,
        "high_running_after_s": round(high_running - edited, 3),
        "high_answer_s": round(high_answer_s, 3),
        "high_answer_model": reply.json()["model"],
        "most_requests_waiting": max((w["waiting"] for w in timeline.waiting), default=0),
        "low_running_again_after_unload_s": round(back - unloaded, 3) if back is not None else None,
        "cut_off_answer": {
            "finish_reason": answer.finish_reason,
            "text_events": answer.events,
            "chars_before_catalog_edit": text_before,
            "chars": len(answer.text),
            "finished_after_s": round(finished - edited, 3),
        },
        "upward_preemptions": len(timeline.upward_preemptions()),
        "states": timeline.states,
        "waiting": timeline.waiting,
        "steps": timeline.steps,
    }


STATE_COLOURS = {
    "starting": "#f2c14e",
    "running": "#3a9d5d",
    "stopping": "#f28c28",
    "preempted": "#d1495b",
    "stopped": "#bbbbbb",
    "error": "#000000",
}


def plot(result: dict[str, Any], out: Path) -> None:
    """Each model's state over time, one band per model, with the scenario's steps as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    end = max(s["t_s"] for s in result["steps"]) + 1.0
    fig, ax = plt.subplots(figsize=(12, 3.6))
    for row, model in enumerate(MODELS):
        changes = [s for s in result["states"] if s["model"] == model]
        for here, after in zip(changes, [*changes[1:], {"t_s": end}], strict=True):
            ax.broken_barh(
                [(here["t_s"], after["t_s"] - here["t_s"])],
                (row - 0.35, 0.7),
                color=STATE_COLOURS.get(here["state"], "#888888"),
            )
    for n, step in enumerate(result["steps"], start=1):
        ax.axvline(step["t_s"], color="#333333", linestyle="--", linewidth=0.8)
        ax.text(
            step["t_s"],
            len(MODELS) - 0.45 + 0.17 * (n % 3),
            str(n),
            ha="center",
            va="bottom",
            fontsize=8,
            bbox={"boxstyle": "circle,pad=0.15", "facecolor": "white", "edgecolor": "#333333", "linewidth": 0.5},
        )
    priority = {s["model"]: s["priority"] for s in result["states"]}  # as the admin API showed it
    ax.set_yticks(range(len(MODELS)), [f"{m} (priority {priority.get(m, '?')})" for m in MODELS])
    ax.set_ylim(-0.6, len(MODELS) + 0.3)
    ax.set_xlim(0, end)
    ax.set_xlabel("seconds")
    ax.set_title("A priority-9 model arrives on a full host held by a priority-3 one")
    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in STATE_COLOURS.items()],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    steps = "\n".join(f"{n}. {s['step']}" for n, s in enumerate(result["steps"], start=1))
    fig.text(0.01, -0.02, steps, fontsize=7, va="top")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=1500, help="of the answer low-chat streams")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/preemption.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, preemption_stack(Path(folder)) as (stack, catalog_file, source):
        result = run(lambda: scenario(stack, catalog_file, source, args.max_tokens))
    result["setup"] = {
        "host_memory_mb": HOST_MEMORY_MB,
        "drain_timeout_s": DRAIN_TIMEOUT_S,
        "max_tokens": args.max_tokens,
        "catalog": catalog(Path("<bench model>"), high=True),
        "run_id": uuid.uuid4().hex[:8],
    }
    write_report(args.out, result)  # first: it makes the folder the plot goes in, and the figures outlive a failed plot
    plot(result, args.out.with_suffix(".png"))
    print(f"plot: {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
