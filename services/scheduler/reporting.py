"""Reporting: what the scheduler tells operators. Its queues (`queue.report.<scheduler>`, which
the gateway's console shows), its Prometheus gauges of the fleet and the streams' backlog, and
the alerts it raises: a node gone offline, a worker restarting in a loop."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import nats
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy

from contracts import streams, subjects
from contracts.base import now_ms
from contracts.queues import DomainQueue, QueueReport
from contracts.requests import Priority
from contracts.workers import ModelState, WorkerStatus
from services.common.alert_rules import AlertKey, CrashLoop, evaluate_offline
from services.common.alerts import publish_alert
from services.common.bus import Bus
from services.common.domains import Domains
from services.scheduler import metrics
from services.scheduler.queues import Queues
from services.scheduler.settings import SchedulerSettings
from services.scheduler.state import FleetState

log = logging.getLogger(__name__)
JETSTREAM_SAMPLE_S = 5.0  # how often the streams' and consumers' backlog is read for metrics


@dataclass
class Reporter:
    settings: SchedulerSettings
    bus: Bus
    fleet: FleetState
    queues: Queues[Msg]
    domains: Domains
    scheduler_id: str
    placements: Counter[str]  # the placement loop's commands sent, by reason
    _offline_firing: frozenset[AlertKey] = frozenset()
    _crash_loop: CrashLoop = field(init=False)
    _sampled_js: float = 0.0

    def __post_init__(self) -> None:
        self._crash_loop = CrashLoop(self.settings.crash_loop_restarts, int(self.settings.crash_loop_window_s * 1000))

    async def heard(self, status: WorkerStatus) -> None:
        """A heartbeat: a process start time that keeps changing is a crash loop."""
        for alert in self._crash_loop.observe(status.worker_id, status.node, status.started_ms, now_ms()):
            await publish_alert(self.bus, alert, self.settings.webhook_url)

    async def offline_alerts(self, now: float) -> None:
        """Raise (or resolve) node-offline alerts from when each node was last heard."""
        seen = {node: now_ms() - int((now - t) * 1000) for node, t in self.fleet.nodes.last_seen().items()}
        alerts, self._offline_firing = evaluate_offline(
            seen, now_ms(), int(self.settings.dead_after_s * 1000), self._offline_firing
        )
        for alert in alerts:
            await publish_alert(self.bus, alert, self.settings.webhook_url)

    async def publish(self) -> None:
        """The queue report on the bus and in the gauges; the streams' backlog now and then."""
        report = self.queue_report()
        await self.bus.nc.publish(subjects.queue_report(self.scheduler_id), report.encode())
        self._fleet_metrics(report)
        if time.monotonic() - self._sampled_js >= JETSTREAM_SAMPLE_S:
            self._sampled_js = time.monotonic()
            await self._jetstream_metrics()

    def queue_report(self) -> QueueReport:
        now = time.monotonic()
        load = self.fleet.load(now)
        domains = []
        for name in sorted(self.queues.domains() | set(load) | set(self.domains.domains)):
            spec = self.domains.spec(name)
            in_flight, slots = load.get(name, (0, 0))
            domains.append(
                DomainQueue(
                    domain=name,
                    in_flight=in_flight,
                    slots=slots,
                    max_queue=spec.max_queue,
                    max_concurrency=spec.max_concurrency,
                    classes=self.queues.classes(name, now),
                    cold_starts=self.queues.cold_starts[name],
                    warm_hits=self.queues.warm_hits[name],
                )
            )
        return QueueReport(scheduler_id=self.scheduler_id, domains=tuple(domains), placements=dict(self.placements))

    def _fleet_metrics(self, report: QueueReport) -> None:
        """The queues of `report`, live workers by domain and state, and every catalog model's
        replicas by state."""
        for d in report.domains:
            metrics.DOMAIN_IN_FLIGHT.labels(d.domain).set(d.in_flight)
            metrics.DOMAIN_SLOTS.labels(d.domain).set(d.slots)
            for priority in Priority:
                q = d.classes.get(priority)
                metrics.QUEUE_DEPTH.labels(d.domain, priority.value).set(q.waiting if q is not None else 0)
        live = self.fleet.workers.live(time.monotonic())
        workers: Counter[tuple[str, str]] = Counter((w.domain, w.state.value) for w in live)
        metrics.WORKERS.clear()
        for (domain, state), n in workers.items():
            metrics.WORKERS.labels(domain, state).set(n)
        replicas = Counter((model, r.state.value) for w in live for model, r in w.replicas().items())
        for model in self.fleet.catalog:
            for state in ModelState:
                metrics.MODEL_REPLICAS.labels(model, state.value).set(replicas[(model, state.value)])

    async def _jetstream_metrics(self) -> None:
        """The backlog of every stream and consumer: what waits to be delivered or acknowledged."""
        try:
            for stream in await self.bus.js.streams_info():
                name = stream.config.name or ""
                metrics.STREAM_MESSAGES.labels(name).set(stream.state.messages)
                if stream.config.retention is not RetentionPolicy.WORK_QUEUE and name != streams.RESULTS:
                    continue  # the KV and object-store streams have no consumers worth watching
                for consumer in await self.bus.js.consumers_info(name):
                    metrics.CONSUMER_PENDING.labels(name, consumer.name).set(consumer.num_pending or 0)
                    metrics.CONSUMER_ACK_PENDING.labels(name, consumer.name).set(consumer.num_ack_pending or 0)
        except nats.errors.Error as exc:
            log.debug("jetstream metrics not sampled: %s", exc)
