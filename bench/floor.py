"""Transport floor: what a streamed chat's hops cost with nothing done at them.

The same path as the pipeline's: an HTTP POST into a FastAPI app under uvicorn, which stores it on
JetStream `req.*`; a durable consumer that stores `assign.*`; another that stores `result.*`;
another that publishes it on core `out.<request>`; back to the HTTP client as one SSE event. The
same nats-server, the same streams (the services' own bootstrap), every stage a process of its own,
but every handler empty: no validation, no auth, no scheduling decision, no engine, no merge, no
task state. Its time to first content is the floor `ttft_overhead_ms` could reach on this machine
with this design. `python -m bench.overhead` measures the two in turns; `python -m bench.floor`
measures the floor alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from services.common.bus import connect
from services.common.ports import free_port
from services.common.runtime import run
from services.devstack import NatsServer

# (consumes, publishes to + request id, stores it in JetStream): scheduler, worker, aggregator.
HOPS = (("req.floor.>", "assign.floor.", True), ("assign.floor.>", "result.", True), ("result.>", "out.", False))


async def hop(nats_url: str, index: int) -> None:
    """One stage: take each message from its stream and pass it on to the next subject, then ack."""
    consumes, publishes, stored = HOPS[index]
    bus = await connect(nats_url, f"floor-hop-{index}")

    async def forward(msg: Msg) -> None:
        subject = publishes + msg.subject.rsplit(".", 1)[-1]
        if stored:
            await bus.js.publish(subject, msg.data)
        else:
            await bus.nc.publish(subject, msg.data)
        await msg.ack()

    await bus.js.subscribe(
        consumes,
        durable=f"floor-{index}",
        manual_ack=True,
        cb=forward,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    await bus.nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


def front(nats_url: str) -> FastAPI:
    """The gateway's part: store the request, relay what comes back on `out.<request>` as SSE."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bus = await connect(nats_url, "floor-front")
        yield
        await app.state.bus.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        bus = request.app.state.bus
        rid = uuid.uuid4().hex
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        sub = await bus.nc.subscribe(f"out.{rid}", cb=replies.put)
        await bus.js.publish(f"req.floor.{rid}", await request.body())
        chunk = json.dumps({"id": rid, "choices": [{"index": 0, "delta": {"content": "x"}}]}).encode()

        async def events() -> AsyncIterator[bytes]:
            await replies.get()
            await sub.unsubscribe()
            yield b"data: " + chunk + b"\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@contextmanager
def floor_stack(timeout_s: float = 30.0) -> Iterator[str]:
    """A nats-server, the three hops and the HTTP front, each its own process; yields the front's URL."""
    with tempfile.TemporaryDirectory() as store:
        nats = NatsServer(Path(store)).start()
        port = free_port()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.floor", "hop", str(i), "--nats", nats.url],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(len(HOPS))
        ]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.floor", "front", "--port", str(port), "--nats", nats.url], text=True
            )
        )
        try:
            for proc in procs[:-1]:
                if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("a floor hop did not start")
            url = f"http://127.0.0.1:{port}"
            for attempt in Retrying(
                retry=retry_if_exception_type(httpx.HTTPError),
                wait=wait_fixed(0.05),
                stop=stop_after_delay(timeout_s),
                reraise=True,
            ):
                with attempt:  # until uvicorn answers, not a fixed sleep
                    httpx.get(url + "/healthz").raise_for_status()
            yield url
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", choices=("measure", "hop", "front"), default="measure")
    parser.add_argument("index", nargs="?", type=int, default=0)
    parser.add_argument("--nats", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    if args.role == "hop":
        run(lambda: hop(args.nats, args.index))
    elif args.role == "front":
        uvicorn.run(front(args.nats), host="127.0.0.1", port=args.port, log_level="warning")
    else:
        from bench.overhead import percentile, stream_once  # the overhead bench's client, which imports this module

        async def measure(url: str) -> list[float]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                for i in range(5):
                    await stream_once(client, 1, seed=i)
                return [(await stream_once(client, 1, seed=i))[1] * 1000 for i in range(args.runs)]

        with floor_stack() as url:
            ttfts = run(lambda: measure(url))
        print(
            f"transport floor, time to first content: p50 {percentile(ttfts, 50):.3f} ms, "
            f"p99 {percentile(ttfts, 99):.3f} ms ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
