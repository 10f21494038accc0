"""The console: its built assets under a self-only CSP, the fleet's live events relayed from the bus over
SSE, a snapshot of nodes and workers, and telemetry history read back from the TELEMETRY stream."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import streams, subjects
from contracts.errors import BusUnavailable, InvalidRequest
from contracts.telemetry import NodeCapabilities, NodeTelemetry
from contracts.workers import WorkerState, WorkerStatus
from services.common.bus import Bus
from services.gateway.relay import GatewayFleet, Relay

DIST = Path(__file__).resolve().parent.parent / "console_dist"
CSP = b"default-src 'self'"
QUEUE_DEPTH = 64  # batches a console may fall behind by before it loses samples (not the gateway's memory)
GET_BY_TIME = (2, 11)  # the server version whose message get takes a start_time
HISTORY_RANGES_S = (900, 3600, int(streams.TELEMETRY_MAX_AGE_S))
# Datacenter GPUs, as a word in NVML's product name ("NVIDIA A100-SXM4-80GB", not "RTX A4000"); any
# other GPU is a workstation card.
DATACENTER_GPU = re.compile(r"\b(A100|H100|H200|H20|B100|B200|GB200|L40S?|L4|A10G?|A30|A40|T4|V100|P100|MI\d+X?)\b")
NODE_CLASSES = ("datacenter", "workstation", "jetson", "cpu")

router = APIRouter(prefix="/v1/console", tags=["console"])  # behind the API key (see app.py)


class ContentSecurityPolicy:
    """Adds `Content-Security-Policy: default-src 'self'` to every HTTP response: the console loads
    nothing from elsewhere (no CDN, no inline script), and a page that tried would be refused. FastAPI's
    API docs (`exempt`) are left as they are: Swagger UI is an inline script and assets from a CDN."""

    def __init__(self, app: ASGIApp, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return

        async def with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP)]
            await send(message)

        await self.app(scope, receive, with_csp)


class ConsoleHub:
    """One subscription per gateway to telemetry, worker heartbeats and alerts, fanned out to every open
    console: fifty consoles cost the bus nothing more than one. Subscribed while any console listens.

    Events are sent in batches, one write per console every `FLUSH_S` at most, each event framed once
    for all consoles; within a batch only the latest telemetry of a node and status of a worker is kept
    (alerts are all kept). A worker sends a status on every slot it takes or frees, and relaying each
    to every console at once put fifty writes in the path of every chat's first token."""

    KINDS = (("telemetry", subjects.TELEMETRY_ALL), ("worker", subjects.WORKER_STATUS_ALL))
    FLUSH_S = 0.25

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.listeners: set[asyncio.Queue[bytes]] = set()
        self._subs: list[Any] = []
        self._lock = asyncio.Lock()
        self._pending: dict[tuple[str, str | int], bytes] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._alerts = 0

    async def join(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_DEPTH)
        async with self._lock:
            if not self._subs:
                nc = self.bus.nc
                self._subs = [await nc.subscribe(subject, cb=self._relay(kind)) for kind, subject in self.KINDS]
                # Alerts through their stream, as the relay follows them: the gateway's NATS user may not
                # subscribe to `alert.>` itself (services.natsauth), and JetStream delivers to its inbox.
                self._subs.append(
                    await self.bus.js.subscribe(
                        subjects.ALERTS_ALL,
                        cb=self._relay("alert"),
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.NEW,
                    )
                )
            self.listeners.add(queue)
        return queue

    async def leave(self, queue: asyncio.Queue[bytes]) -> None:
        async with self._lock:
            self.listeners.discard(queue)
            if not self.listeners:
                subs, self._subs = self._subs, []
                for sub in subs:
                    await sub.unsubscribe()

    def _relay(self, kind: str) -> Any:
        async def on_message(msg: Msg) -> None:
            # The bus carries JSON already (Message.encode): relayed as it is, never decoded here.
            if kind == "alert":
                self._alerts += 1
                key: str | int = self._alerts
            else:
                key = msg.subject
            self._pending.pop((kind, key), None)  # the latest goes last, in arrival order
            self._pending[(kind, key)] = b"event: %s\ndata: %s\n\n" % (kind.encode(), msg.data)
            if self._flush is None:
                self._flush = asyncio.get_running_loop().call_later(self.FLUSH_S, self._send)

        return on_message

    def _send(self) -> None:
        self._flush = None
        batch, self._pending = b"".join(self._pending.values()), {}
        for queue in self.listeners:
            if not queue.full():  # a console that fell this far behind loses samples, not our memory
                queue.put_nowait(batch)


def _relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


RelayDep = Annotated[Relay, Depends(_relay)]


def _hub(request: Request) -> ConsoleHub:
    state = request.app.state
    if getattr(state, "console_hub", None) is None:
        state.console_hub = ConsoleHub(state.relay.bus)
    hub: ConsoleHub = state.console_hub
    return hub


HubDep = Annotated[ConsoleHub, Depends(_hub)]


@router.get("/events", response_model=None)
async def events(request: Request, hub: HubDep) -> EventSourceResponse:
    """The fleet as it changes: `telemetry` (NodeTelemetry), `worker` (WorkerStatus) and `alert` (Alert)
    events, each the bus message's JSON, after one `ready` event."""
    queue = await hub.join()

    async def relayed() -> AsyncIterator[ServerSentEvent | bytes]:
        try:
            yield ServerSentEvent(event="ready", data="{}")
            while True:
                yield await queue.get()  # a batch of events, framed already
        finally:
            await hub.leave(queue)

    return EventSourceResponse(relayed(), sep="\n", ping=15)


def node_class(caps: NodeCapabilities | None, telemetry: NodeTelemetry | None) -> str:
    """datacenter, workstation, jetson or cpu: the operator's `class` label where given, else from the
    hardware (a Jetson board, the GPUs' names, no GPU)."""
    labels = caps.labels if caps else {}
    if labels.get("class") in NODE_CLASSES:
        return labels["class"]
    if caps is not None and caps.jetson_model:
        return "jetson"
    names = [g.name for g in caps.gpus] if caps and caps.gpus else [g.name for g in telemetry.gpus] if telemetry else []
    if not names:
        return "cpu"
    return "datacenter" if any(DATACENTER_GPU.search(n.upper()) for n in names) else "workstation"


def node_state(online: bool, workers: list[WorkerStatus]) -> str:
    """offline (silent), draining (every worker on it drains), or online."""
    if not online:
        return "offline"
    if workers and all(w.state is WorkerState.draining for w in workers):
        return "draining"
    return "online"


def fleet_snapshot(fleet: GatewayFleet, now: float) -> dict[str, Any]:
    seen = fleet.nodes.last_seen()
    workers = fleet.live_workers()
    worker_seen = fleet.workers.last_seen()
    nodes = []
    for name in sorted(set(fleet.capabilities) | set(seen)):
        telemetry = fleet.nodes.get(name, now)
        caps = fleet.capabilities.get(name)
        nodes.append(
            {
                "node": name,
                "class": node_class(caps, telemetry),
                "state": node_state(telemetry is not None, [w for w in workers if w.node == name]),
                "heartbeat_age_s": round(now - seen[name], 3) if name in seen else None,
                "capabilities": caps.model_dump(mode="json") if caps else None,
                "telemetry": telemetry.model_dump(mode="json") if telemetry else None,
            }
        )
    return {
        "dead_after_s": fleet.dead_after_s,
        "nodes": nodes,
        "workers": [
            {**w.model_dump(mode="json"), "heartbeat_age_s": round(now - worker_seen[w.worker_id], 3)} for w in workers
        ],
    }


@router.get("/fleet")
async def fleet(relay: RelayDep) -> dict[str, Any]:
    """Nodes with their class, state (online, draining, offline), heartbeat age, capabilities and
    latest telemetry; live workers with their heartbeat age. The events stream keeps it current."""
    return fleet_snapshot(relay.fleet, time.monotonic())


async def _sample(nc: NATS, subject: str, at: datetime) -> tuple[int, dict[str, Any]] | None:
    """The first message on `subject` at or after `at` (sequence, decoded), or None: the server finds it
    by time, so a 6 h view reads a few hundred messages per node, not 21,600."""
    request = {"start_time": at.isoformat().replace("+00:00", "Z"), "next_by_subj": subject}
    reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{streams.TELEMETRY}", json.dumps(request).encode(), timeout=5)
    body = json.loads(reply.data)
    if "message" not in body:
        return None  # 404: nothing that late
    message = body["message"]
    return message["seq"], json.loads(base64.b64decode(message["data"]))


async def node_history(nc: NATS, node: str, start: float, end: float, points: int) -> list[dict[str, Any]]:
    """About `points` telemetry samples of `node` evenly spread over [start, end] (epoch seconds); a
    stretch with no sample (the node was down) has none."""
    step = (end - start) / points
    times = [datetime.fromtimestamp(start + i * step, timezone.utc) for i in range(points)]
    found = await asyncio.gather(*(_sample(nc, subjects.telemetry(node), t) for t in times))
    samples: dict[int, dict[str, Any]] = {}
    for at, hit in zip(times, found, strict=True):
        # A sample far past its slot belongs to a later one: here the node was silent.
        if hit is not None and hit[1].get("ts_ms", 0) / 1000 < at.timestamp() + step * 2:
            samples.setdefault(hit[0], hit[1])
    return [samples[seq] for seq in sorted(samples)]


@router.get("/history")
async def history(
    relay: RelayDep,
    range_s: Annotated[int, Query(description="How far back: 900 (15 min), 3600 (1 h) or 21600 (6 h).")] = 900,
    points: Annotated[int, Query(ge=10, le=1000, description="Samples per node, evenly spread.")] = 300,
) -> dict[str, Any]:
    """Each node's telemetry over the last `range_s` seconds, from the TELEMETRY stream (kept
    `streams.TELEMETRY_MAX_AGE_S`), as NodeTelemetry objects oldest first."""
    if range_s not in HISTORY_RANGES_S:
        raise InvalidRequest(f"range_s must be one of {', '.join(map(str, HISTORY_RANGES_S))}")
    server = relay.bus.nc.connected_server_version
    if (server.major, server.minor) < GET_BY_TIME:
        # An older server ignores start_time and answers every slot with the oldest sample: refuse instead.
        version = f"{server.major}.{server.minor}"
        raise BusUnavailable(f"telemetry history needs NATS 2.11 or later; this server is {version}")
    info = await relay.bus.js.stream_info(streams.TELEMETRY, subjects_filter=subjects.TELEMETRY_ALL)
    names = sorted(s.split(".", 1)[1] for s in (info.state.subjects or {}))
    end = time.time()
    series = await asyncio.gather(*(node_history(relay.bus.nc, n, end - range_s, end, points) for n in names))
    return {
        "range_s": range_s,
        "end_ms": int(end * 1000),
        "nodes": [{"node": n, "samples": s} for n, s in zip(names, series, strict=True)],
    }


async def _stored(js: JetStreamContext, stream: str, seq: int) -> bytes | None:
    try:
        msg = await js.get_msg(stream, seq)
    except NotFoundError:
        return None  # an older revision, deleted when its key was written again
    return msg.data or None  # a delete marker has no data


async def recent_requests(js: JetStreamContext, limit: int) -> list[dict[str, Any]]:
    """The states of the latest `limit` requests, newest first, read backwards from the `tasks` bucket's
    stream: it keeps one revision a key, so each stored message is a different request."""
    stream = f"KV_{streams.KV_TASKS}"
    state = (await js.stream_info(stream)).state
    found: list[dict[str, Any]] = []
    seq = state.last_seq
    while seq >= max(1, state.first_seq) and len(found) < limit:
        # Each request leaves a few deleted revisions behind it: ask for a few times what is missing.
        batch = range(seq, max(state.first_seq, seq - 3 * (limit - len(found))) - 1, -1)
        for data in await asyncio.gather(*(_stored(js, stream, s) for s in batch)):
            if data is not None:
                found.append(json.loads(data))
        seq = batch[-1] - 1
    return found[:limit]


@router.get("/requests")
async def requests(
    relay: RelayDep, limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first.")] = 100
) -> dict[str, Any]:
    """Recent requests and tasks of every modality with their state (TaskState objects), newest first."""
    return {"object": "list", "data": await recent_requests(relay.bus.js, limit)}


def mount_assets(app: FastAPI) -> None:
    """The built console at `/` (index.html) and `/assets/`. Built by `make console`; a gateway without
    the build answers 503 at `/` saying how to build it, and serves its API as ever."""

    @app.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        page = DIST / "index.html"
        if not page.is_file():
            return PlainTextResponse("The console is not built: run `make console`.", status_code=503)
        # index.html names the hashed assets of the current build: never cached.
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    # check_dir=False: a build made after the gateway started is served too.
    app.mount("/assets", StaticFiles(directory=DIST / "assets", check_dir=False), name="console-assets")
