"""The scheduler's Prometheus metrics: its queues, decisions and placements, the models' replicas
by state, and JetStream's backlog (streams and consumers), which it samples for the whole fleet."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import SECONDS

QUEUE_DEPTH = Gauge("modalmesh_scheduler_queue_depth", "Requests waiting for a free slot.", ["domain", "priority"])
QUEUE_WAIT = Histogram(
    "modalmesh_scheduler_queue_wait_seconds",
    "Time a request waited in the scheduler.",
    ["domain", "priority"],
    buckets=SECONDS,
)
DOMAIN_IN_FLIGHT = Gauge(
    "modalmesh_scheduler_domain_in_flight", "Requests in flight on a domain's workers.", ["domain"]
)
DOMAIN_SLOTS = Gauge("modalmesh_scheduler_domain_slots", "Slots of a domain's live workers.", ["domain"])
DISPATCHED = Counter(
    "modalmesh_scheduler_dispatched_total",
    "Requests sent to a worker, by whether a worker "
    "held their model when they came (warm) or it had to be loaded (cold).",
    ["domain", "start"],
)
DECISION = Histogram(
    "modalmesh_scheduler_decision_seconds",
    "Time to choose a worker.",
    buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01),
)
PLACEMENTS = Counter(
    "modalmesh_scheduler_placements_total", "Load and unload commands sent, by reason.", ["action", "reason"]
)
REASSIGNED = Counter(
    "modalmesh_scheduler_reassigned_total",
    "Assignments moved to another worker after a death or a hand-back (moved), or put back in the queue (requeued).",
    ["why"],
)
WORKERS = Gauge(
    "modalmesh_scheduler_live_workers", "Workers whose heartbeats arrive, by domain and state.", ["domain", "state"]
)
MODEL_REPLICAS = Gauge("modalmesh_model_replicas", "Replicas of a model on live workers, by state.", ["model", "state"])
STREAM_MESSAGES = Gauge("modalmesh_jetstream_stream_messages", "Messages a JetStream stream holds.", ["stream"])
CONSUMER_PENDING = Gauge(
    "modalmesh_jetstream_consumer_pending", "Messages not yet delivered to a consumer.", ["stream", "consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "modalmesh_jetstream_consumer_ack_pending",
    "Messages delivered to a consumer and not yet acknowledged.",
    ["stream", "consumer"],
)
