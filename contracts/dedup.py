"""JetStream de-duplication: the `Nats-Msg-Id` header of each kind of message a service publishes.

JetStream stores a message once per id within a stream's duplicate window, so whatever is sent
twice (a publish retried after a lost acknowledgement, two schedulers moving the same work, a
re-published request) must carry the same id both times, and different messages different ids.
Each form is written here once; publishers take the header from these functions.
"""

from __future__ import annotations

from contracts.assignments import Assignment
from contracts.telemetry import Alert

MSG_ID = "Nats-Msg-Id"


def request(request_id: str) -> dict[str, str]:
    """A request in REQUESTS: the gateway's publish and its re-publish after an outage are one."""
    return {MSG_ID: request_id}


def requeued(request_id: str, attempt: int) -> dict[str, str]:
    """A request handed back after `attempt` and put in REQUESTS again (not the client's original)."""
    return {MSG_ID: f"{request_id}:requeue:{attempt}"}


def dead_letter(request_id: str) -> dict[str, str]:
    """A request kept in `dead.<modality>` once JetStream stopped delivering it."""
    return {MSG_ID: f"dead:{request_id}"}


def assignment(assigned: Assignment) -> dict[str, str]:
    """An attempt of a request in ASSIGNMENTS: two schedulers moving the same attempt store it once."""
    return {MSG_ID: f"{assigned.request_id}:{assigned.attempt}"}


def chunk(request_id: str, attempt: int, seq: int) -> dict[str, str]:
    """One chunk of an attempt's output in RESULTS, resent after a lost acknowledgement."""
    return {MSG_ID: f"{request_id}:{attempt}:{seq}"}


def alert(raised: Alert) -> dict[str, str]:
    """An alert's change of state in ALERTS, from whichever process noticed it first."""
    return {MSG_ID: f"{raised.name}:{raised.node}:{raised.subject_key}:{raised.state.value}:{raised.ts_ms}"}


def usage(request_id: str) -> dict[str, str]:
    """A finished request's usage record in USAGE: a replay of the same request counts once."""
    return {MSG_ID: f"usage-{request_id}"}
