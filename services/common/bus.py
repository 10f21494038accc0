"""Connecting to NATS: retried until it answers, then the bootstrap, so start order never matters."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_exponential

from contracts.streams import bootstrap, replicas_for

log = logging.getLogger(__name__)


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()


ACK_WITHIN_S = 10.0


async def ack_confirmed(msg: Msg, within_s: float = ACK_WITHIN_S) -> None:
    """Acknowledge a JetStream message and wait for the server to confirm it, again through a NATS
    restart. A plain ack lost in a restart leaves the message pending until its ack_wait (30 s for an
    assignment), and a consumer whose max_ack_pending is full (a one-slot worker's) is sent nothing
    else meanwhile: new work would wait that long behind an answer already finished. The server
    confirms an ack of a message acknowledged or deleted already, so a retry is safe."""
    try:
        async for attempt in while_unanswered(within_s):
            with attempt:
                await msg.ack_sync(timeout=1.0)
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        log.warning(
            "acknowledgement of %s not confirmed (%s): it comes back after its ack_wait",
            msg.subject,
            type(exc).__name__,
        )


def while_unanswered(within_s: float, max_wait_s: float = 1.0) -> AsyncRetrying:
    """Retries for a NATS call the server did not answer (it was restarting, or the reply timed out),
    with backoff, for up to `within_s` seconds; then the last error is raised:

        async for attempt in while_unanswered(30):
            with attempt:
                await kv.put(key, value)
    """
    return AsyncRetrying(
        retry=retry_if_exception_type((nats.errors.Error, asyncio.TimeoutError)),
        wait=wait_exponential(multiplier=0.1, max=max_wait_s),
        stop=stop_after_delay(max(0.0, within_s)),
        reraise=True,
    )


async def _log_error(exc: Exception) -> None:
    # nats-py keeps retrying by itself; one line per failure is enough.
    log.warning("nats: %s: %s", type(exc).__name__, exc)


async def _log_disconnected() -> None:
    log.info("nats: disconnected (reconnecting unless closing)")


async def _log_reconnected() -> None:
    log.info("nats: reconnected")


def cluster_size(nc: Client) -> int:
    """How many servers the connected server's cluster has: its INFO lists every member's client URL
    (`connect_urls`, its own included; empty or absent when it runs alone). nats-py keeps INFO only in
    a private field."""
    info = getattr(nc, "_server_info", None) or {}
    return max(1, len(set(info.get("connect_urls") or ())))


async def connect(url: str, name: str, replicas: int = 0) -> Bus:
    """Connect (retrying forever with backoff), run the bootstrap, and return the connection.
    `replicas` above 0 sets how many copies of each stream and bucket a cluster keeps; 0 lets the
    bootstrap decide from the cluster's size (contracts.streams.replicas_for)."""
    servers = [s.strip() for s in url.split(",") if s.strip()]
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((OSError, nats.errors.Error, TimeoutError)),
        wait=wait_exponential(multiplier=0.05, max=2.0),
        before_sleep=before_sleep_log(log, logging.INFO),
        reraise=True,
    ):
        with attempt:
            nc = await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_log_error,
                disconnected_cb=_log_disconnected,
                reconnected_cb=_log_reconnected,
            )
    js = nc.jetstream()
    async for attempt in AsyncRetrying(
        # JetStream may still be starting up right after the server accepts connections.
        retry=retry_if_exception_type((nats.errors.Error, TimeoutError)),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    ):
        with attempt:
            await bootstrap(js, replicas_for(cluster_size(nc), replicas))
    where = nc.connected_url
    log.info("%s connected to %s:%s", name, where.hostname if where else "?", where.port if where else "?")
    return Bus(nc=nc, js=js)
