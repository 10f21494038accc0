"""NATS as this node would meet it: reachable and accepting its login at the configured URL, with
JetStream, and a clock that agrees with the server's.

Clock skew is measured as NTP does, against the server's own clock: the doctor asks JetStream for a
stream's info, whose reply carries the server's time at answering (`ts`, nats-server 2.10 and
later), and compares it with the midpoint of the local clock's readings before and after the
request. The error of one sample is at most half its round trip; the sample with the shortest round
trip of several is kept. Nothing is written to the server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.js.api import DEFAULT_PREFIX

from contracts import streams
from services.doctor.report import Check, Status

SKEW_WARN_S = 0.5
SKEW_FAIL_S = 5.0  # request deadlines are epoch times set on the gateway's node: seconds of skew move them
SAMPLES = 5


def redacted(url: str) -> str:
    """The URL(s) with any password replaced, fit for a report."""
    shown = []
    for one in url.split(","):
        parts = urlsplit(one.strip() if "://" in one else f"nats://{one.strip()}")
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        shown.append(urlunsplit(parts._replace(netloc=netloc)))
    return ",".join(shown)


async def connect_once(url: str, timeout_s: float) -> Client:
    """A connection without waiting for the server: each server is tried twice, then the error that
    stopped the last try is raised (not nats-py's "no servers available"), to be reported."""
    errors: list[Exception] = []

    async def keep(exc: Exception) -> None:
        errors.append(exc)

    try:
        return await nats.connect(
            servers=[s.strip() for s in url.split(",") if s.strip()],
            name="modalmesh-doctor",
            connect_timeout=timeout_s,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # nats-py's 0 is "for ever"
            reconnect_time_wait=0.2,
            error_cb=keep,
        )
    except nats.errors.NoServersError:
        if errors:
            raise errors[-1] from None
        raise


def _why(exc: BaseException, url: str) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if "authorization" in str(exc).lower() or "authentication" in str(exc).lower():
        return f"{redacted(url)} refused the login (wrong user or password in MODALMESH_NATS_URL): {text}"
    if isinstance(exc, (ConnectionRefusedError, nats.errors.NoServersError)):
        return f"nothing accepts connections at {redacted(url)}: {text}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"{redacted(url)} did not answer in time: {text}"
    return f"{redacted(url)}: {text}"


async def check_nats(url: str, timeout_s: float) -> tuple[Check, Client | None]:
    """Connect and log in, time a round trip, and ask for the account's JetStream."""
    try:
        nc = await connect_once(url, timeout_s)
    except Exception as exc:
        return Check(name="nats", status=Status.fail, reason=_why(exc, url), details={"url": redacted(url)}), None
    started = time.perf_counter()
    await nc.flush(timeout=max(1, round(timeout_s)))
    rtt_ms = (time.perf_counter() - started) * 1000
    where = nc.connected_url
    details: dict[str, Any] = {
        "url": redacted(url),
        "connected": f"{where.hostname}:{where.port}" if where else None,
        "server_version": _version(nc),
        "rtt_ms": round(rtt_ms, 3),
    }
    try:
        account = await nc.jetstream().account_info()
    except Exception as exc:
        reason = f"connected, but JetStream does not answer this user: {type(exc).__name__}: {exc}"
        return Check(name="nats", status=Status.fail, reason=reason, details=details), nc
    details["jetstream"] = {"streams": account.streams, "memory": account.memory, "storage": account.storage}
    reason = (
        f"logged in at {details['connected']} (nats-server {details['server_version']}), round trip "
        f"{rtt_ms:.1f} ms, JetStream on with {account.streams} stream(s)"
    )
    return Check(name="nats", status=Status.ok, reason=reason, details=details), nc


def _version(nc: Client) -> str:
    v = nc.connected_server_version
    return f"{v.major}.{v.minor}.{v.patch}"


def server_time(text: str) -> float:
    """An RFC 3339 time as nats-server writes it (nanoseconds, `Z`), as epoch seconds."""
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    if stamp.tzinfo is None:  # pragma: no cover - the pattern always has a zone
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


async def measure_skew(nc: Client, samples: int = SAMPLES, timeout_s: float = 2.0) -> dict[str, float]:
    """The server's clock minus this node's, in seconds (positive: the server is ahead), and the
    bound on its error; from the sample with the shortest round trip."""
    subject = f"{DEFAULT_PREFIX}.STREAM.INFO.{streams.TELEMETRY}"
    best: dict[str, float] | None = None
    for _ in range(samples):
        sent = time.time()
        reply = await nc.request(subject, b"", timeout=timeout_s)
        received = time.time()
        info = json.loads(reply.data)
        if "ts" not in info:
            error = info.get("error", {}).get("description")
            raise LookupError(error or "the server's stream info carries no time (nats-server before 2.10)")
        rtt = received - sent
        sample = {"skew_s": server_time(info["ts"]) - (sent + received) / 2, "error_s": rtt / 2, "rtt_s": rtt}
        if best is None or rtt < best["rtt_s"]:
            best = sample
    assert best is not None
    return best


async def check_clock(nc: Client | None) -> Check:
    if nc is None:
        return Check(name="clock", status=Status.warn, reason="not measured: no connection to NATS")
    try:
        skew = await measure_skew(nc)
    except LookupError as exc:
        return Check(name="clock", status=Status.warn, reason=f"not measured: {exc}")
    details = {
        "skew_ms": round(skew["skew_s"] * 1000, 3),
        "error_ms": round(skew["error_s"] * 1000, 3),
        "method": f"JetStream stream info's server time vs this clock's midpoint, best of {SAMPLES}",
    }
    size = abs(skew["skew_s"])
    said = (
        f"the server's clock is {size * 1000:.1f} ms {'ahead of' if skew['skew_s'] >= 0 else 'behind'} this "
        f"node's (± {skew['error_s'] * 1000:.1f} ms)"
    )
    if size > SKEW_FAIL_S:
        return Check(
            name="clock", status=Status.fail, reason=f"{said}: over {SKEW_FAIL_S:g} s, set up NTP", details=details
        )
    if size > SKEW_WARN_S:
        return Check(name="clock", status=Status.warn, reason=f"{said}: over {SKEW_WARN_S:g} s", details=details)
    return Check(name="clock", status=Status.ok, reason=said, details=details)
