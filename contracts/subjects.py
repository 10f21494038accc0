"""Every subject on the bus. Services call these functions; they never type a subject string."""

from __future__ import annotations

from contracts.requests import Modality

REQUESTS_ALL = "req.>"
ASSIGN_ALL = "assign.>"
RESULTS_ALL = "result.>"
WORKER_STATUS_ALL = "worker.status.>"
CANCEL_ALL = "cancel.>"
TELEMETRY_ALL = "telemetry.>"
ALERTS_ALL = "alert.>"
DEAD_ALL = "dead.>"
USAGE_ALL = "usage.>"


def _token(value: str) -> str:
    """Guard against ids that would change a subject's shape."""
    if not value or any(c in value for c in ". *>\t\r\n"):
        raise ValueError(f"not usable as a subject token: {value!r}")
    return value


def request(modality: Modality) -> str:
    return f"req.{modality.value}"


def usage(key_id: str) -> str:
    """Where a gateway records what a finished request of one API key used (contracts.keys.UsageRecord)."""
    return f"usage.{_token(key_id)}"


def assign(worker_id: str) -> str:
    return f"assign.{_token(worker_id)}"


def result(request_id: str) -> str:
    return f"result.{_token(request_id)}"


def out(request_id: str) -> str:
    return f"out.{_token(request_id)}"


def cancel(request_id: str) -> str:
    return f"cancel.{_token(request_id)}"


def worker_status(worker_id: str) -> str:
    return f"worker.status.{_token(worker_id)}"


def control(worker_id: str) -> str:
    return f"control.{_token(worker_id)}"


def telemetry(node: str) -> str:
    return f"telemetry.{_token(node)}"


def alert(severity: str, node: str) -> str:
    return f"alert.{_token(severity)}.{_token(node)}"


QUEUE_REPORTS_ALL = "sched.queues.>"


def queue_report(scheduler_id: str) -> str:
    """Each scheduler's report of what waits in it, per domain and priority class."""
    return f"sched.queues.{_token(scheduler_id)}"


GIVEBACK = "scheduler.giveback"  # request-reply: a worker hands back an assignment it cannot finish


def dead(modality: Modality) -> str:
    """Where a request that kept failing is kept, for people to look at and replay."""
    return f"dead.{modality.value}"


def max_deliveries_advisory(stream: str, consumer: str) -> str:
    """JetStream's advisory when a consumer gives up on a message after `max_deliver` tries."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{_token(stream)}.{_token(consumer)}"


def last_token(subject: str) -> str:
    """The id at the end of a per-request or per-worker subject."""
    return subject.rsplit(".", 1)[-1]
