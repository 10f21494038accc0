"""Streams, consumers and buckets, and the one idempotent bootstrap every service runs at start."""

from __future__ import annotations

import dataclasses
import logging

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from contracts import subjects

log = logging.getLogger(__name__)

REQUESTS = "REQUESTS"
ASSIGNMENTS = "ASSIGNMENTS"
RESULTS = "RESULTS"
TELEMETRY = "TELEMETRY"
ALERTS = "ALERTS"
DEAD_LETTERS = "DEAD_LETTERS"
USAGE = "USAGE"

KV_NODES = "nodes"
KV_MODELS = "models"
KV_TASKS = "tasks"
KV_PLACEMENT = "placement"  # operators' overrides of the catalog (contracts.workers.ModelOverride)
KV_KEYS = "keys"  # API keys made by the admin API, under their sha256 (contracts.keys.ManagedKey)
KV_RATES = "rates"  # per-key request and token counters of the current minute, shared by every gateway
KV_QUOTAS = "quotas"  # per-key tokens of each day and month, for keys with quotas
KV_CACHE = "cache"  # the gateways' response cache: a fixed answer's chunks under the sha256 of its request
OBJ_ARTIFACTS = "artifacts"
OBJ_MODELS = "models"  # model files shared through the fleet: `<model id>/<path in its folder>`

SCHEDULER_CONSUMER = "scheduler"
AGGREGATOR_CONSUMER = "aggregator"

DEDUP_WINDOW_S = 120.0
RESULTS_MAX_AGE_S = 3600.0
TELEMETRY_MAX_AGE_S = 6 * 3600.0
TASKS_TTL_S = 24 * 3600.0
USAGE_MAX_AGE_S = 400 * 24 * 3600.0  # a year and a month: monthly reports for the year before
RATES_TTL_S = 180.0
QUOTAS_TTL_S = 32 * 24 * 3600.0  # a month's counter outlives its month (each write starts its age anew)
CACHE_TTL_S = 3600.0
CACHE_MAX_BYTES = 256 * 1024 * 1024  # when full, new answers are not kept until older ones expire


def worker_consumer(worker_id: str) -> str:
    """Durable consumer name of a worker on ASSIGNMENTS."""
    return f"worker-{worker_id}"


STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=REQUESTS,
        subjects=[subjects.REQUESTS_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DEDUP_WINDOW_S,
        discard=DiscardPolicy.NEW,
        max_msgs=100_000,
    ),
    StreamConfig(
        name=ASSIGNMENTS,
        subjects=[subjects.ASSIGN_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DEDUP_WINDOW_S,
    ),
    StreamConfig(
        name=RESULTS,
        subjects=[subjects.RESULTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=RESULTS_MAX_AGE_S,
        duplicate_window=DEDUP_WINDOW_S,
    ),
    StreamConfig(
        name=TELEMETRY,
        subjects=[subjects.TELEMETRY_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        # The console's history (6 h at most), a sample a second per node at the monitor's default interval.
        max_msgs_per_subject=int(TELEMETRY_MAX_AGE_S),
        max_age=TELEMETRY_MAX_AGE_S,
    ),
    StreamConfig(
        name=ALERTS,
        subjects=[subjects.ALERTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=500,
        max_age=7 * 24 * 3600.0,
    ),
    StreamConfig(
        name=DEAD_LETTERS,
        subjects=[subjects.DEAD_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * 24 * 3600.0,
        duplicate_window=DEDUP_WINDOW_S,
    ),
    # One record per finished request, under its request id (Nats-Msg-Id): a replay of the same
    # request within the window counts once; usage is these records, summed when asked for.
    StreamConfig(
        name=USAGE,
        subjects=[subjects.USAGE_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=USAGE_MAX_AGE_S,
        duplicate_window=DEDUP_WINDOW_S,
    ),
)

BUCKETS: tuple[KeyValueConfig, ...] = (
    KeyValueConfig(bucket=KV_NODES, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=KV_MODELS, history=5, storage=StorageType.FILE),
    KeyValueConfig(bucket=KV_TASKS, history=1, ttl=TASKS_TTL_S, storage=StorageType.FILE),
    KeyValueConfig(bucket=KV_PLACEMENT, history=5, storage=StorageType.FILE),
    KeyValueConfig(bucket=KV_KEYS, history=1, storage=StorageType.FILE),
    # A counter serves one minute; the TTL clears the spent ones.
    KeyValueConfig(bucket=KV_RATES, history=1, ttl=RATES_TTL_S, storage=StorageType.MEMORY),
    KeyValueConfig(bucket=KV_QUOTAS, history=1, ttl=QUOTAS_TTL_S, storage=StorageType.FILE),
    KeyValueConfig(bucket=KV_CACHE, history=1, ttl=CACHE_TTL_S, max_bytes=CACHE_MAX_BYTES, storage=StorageType.FILE),
)


CLUSTER_REPLICAS = 3


def replicas_for(cluster_size: int, configured: int = 0) -> int:
    """How many copies of every stream and bucket the servers keep: `configured` when set (above 0),
    else three on a cluster of three or more servers (one server may die and a quorum remains) and
    one otherwise (a stream cannot have more replicas than there are servers)."""
    if configured > 0:
        return configured
    return CLUSTER_REPLICAS if cluster_size >= CLUSTER_REPLICAS else 1


async def bootstrap(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update every stream and bucket, each with `replicas` copies. Safe to run from every
    service, in any order, any time."""
    for config in STREAMS:
        config = dataclasses.replace(config, num_replicas=replicas)
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with other settings (another version wrote it, or the cluster grew): bring it to ours.
            await js.update_stream(config)
    for kv in BUCKETS:
        try:
            await js.key_value(kv.bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(dataclasses.replace(kv, replicas=replicas))
    for store in (OBJ_ARTIFACTS, OBJ_MODELS):
        try:
            await js.object_store(store)
        except (NotFoundError, BadRequestError):
            await js.create_object_store(store, ObjectStoreConfig(bucket=store, replicas=replicas))
    log.debug("bootstrap done: %d streams, %d buckets, %d replicas", len(STREAMS), len(BUCKETS), replicas)
