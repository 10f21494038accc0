"""The scheduler service: its parts wired to the bus and to one housekeeping loop.

- `intake.py`: requests, cancels, dead letters and hand-backs as they come;
- `dispatch.py`: waiting requests to free slots (and, through `failover.py`, dead workers' work);
- `placer.py`: the placement loop, loads and unloads of catalog models on host workers;
- `reporting.py`: the queue report, metrics and alerts.

The decisions are pure functions beside them: `routing.py` (where a model's requests can go),
`policy.py` (which worker), `queues.py` (which request next), `placement.py` (which model where).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import streams, subjects
from contracts.workers import WorkerStatus
from services.common.bus import Bus
from services.common.domains import Domains
from services.common.shutdown import wait_or_stop
from services.scheduler.catalog import follow_file
from services.scheduler.dispatch import Dispatcher
from services.scheduler.failover import Failover
from services.scheduler.intake import Intake
from services.scheduler.placer import Placer
from services.scheduler.queues import Queues
from services.scheduler.reporting import Reporter
from services.scheduler.settings import SchedulerSettings
from services.scheduler.state import FleetState

log = logging.getLogger(__name__)


@dataclass
class Scheduler:
    settings: SchedulerSettings
    bus: Bus
    domains: Domains | None = None  # None: the settings' domains file
    scheduler_id: str = field(default_factory=lambda: f"{socket.gethostname().split('.')[0]}-{os.getpid()}")
    fleet: FleetState = field(init=False)
    queues: Queues[Msg] = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    intake: Intake = field(init=False)
    placer: Placer = field(init=False)
    reporter: Reporter = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        domains = self.domains = self.domains or Domains.load(s.domains_file)
        self.queues = Queues(aging_s=s.aging_s)
        self.fleet = FleetState(dead_after_s=s.dead_after_s)
        self.dispatcher = Dispatcher(s, self.bus, self.fleet, self.queues, domains)
        self.intake = Intake(s, self.bus, self.dispatcher)
        self.placer = Placer(self.bus, self.fleet, s.placement_interval_s, s.placement_grace_s)
        self.fleet.on_override = self.placer.soon
        self.reporter = Reporter(
            s, self.bus, self.fleet, self.queues, domains, self.scheduler_id, self.placer.placements
        )

    @property
    def failover(self) -> Failover:
        return self.dispatcher.failover

    async def run(self, stop: asyncio.Event) -> None:
        await self.fleet.follow(self.bus, on_status=self._on_status)
        await self.fleet.follow_catalog(self.bus)
        await self._adopt_known_workers()
        tasks = [asyncio.create_task(self._housekeeping(stop))]
        if self.settings.catalog_file is not None:
            tasks.append(asyncio.create_task(follow_file(self.bus, self.settings.catalog_file, stop)))
        nc, queue = self.bus.nc, streams.SCHEDULER_CONSUMER
        subs = [
            await nc.subscribe(subjects.CANCEL_ALL, cb=self.intake.on_cancel),
            await nc.subscribe(subjects.GIVEBACK, queue=queue, cb=self.intake.on_give_back),
        ]
        # One durable consumer shared by every scheduler (a queue group): each request reaches one.
        requests = await self.bus.js.subscribe(
            subjects.REQUESTS_ALL,
            queue=queue,
            durable=queue,
            stream=streams.REQUESTS,
            manual_ack=True,
            cb=self.intake.on_request,
            # Requests waiting here for a slot are unacknowledged: room for every queue's fill.
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.ack_wait_s,
                max_deliver=self.settings.max_deliver,
                max_ack_pending=self.settings.max_waiting,
            ),
        )
        # One scheduler (a queue group) takes each request that ran out of deliveries.
        advisory = subjects.max_deliveries_advisory(streams.REQUESTS, queue)
        subs.append(await nc.subscribe(advisory, queue=queue, cb=self.intake.on_max_deliveries))
        log.info("scheduler ready, policy %s", self.settings.policy.value)
        await stop.wait()
        await requests.unsubscribe()  # no new request first
        for sub in subs:
            await sub.unsubscribe()
        await asyncio.gather(*tasks)
        await self.fleet.unfollow()

    async def _on_status(self, status: WorkerStatus) -> None:
        self.fleet.recent.pop(status.worker_id, None)
        await self.failover.heard(status.worker_id, status.started_ms)
        await self.reporter.heard(status)
        if self.queues:  # a slot may have come free (a dead worker's streams take it first)
            await self.dispatcher.dispatch()
        elif self.failover.orphaned:
            await self.failover.drain()

    async def _adopt_known_workers(self) -> None:
        """Workers that have an assignment queue count as seen now: if one is already dead, it is
        noticed after `dead_after_s` like any other, and its work is re-assigned."""
        now = time.monotonic()
        for info in await self.bus.js.consumers_info(streams.ASSIGNMENTS):
            name = info.name or ""
            if name.startswith(streams.worker_consumer("")) and not self.fleet.workers.get(name, now):
                wid = name.removeprefix(streams.worker_consumer(""))
                unheard = WorkerStatus(
                    worker_id=wid, node="", engine="", models=(), slots_total=0, slots_free=0, outstanding=0
                )
                self.fleet.workers.observe_status(unheard, now)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Every half heartbeat: re-assign the work of dead workers, raise node-offline alerts, tend
        the queues, place models, dispatch and report. While this scheduler is cut off from NATS it
        hears no heartbeat, and declares nobody dead."""
        while not stop.is_set():
            now = time.monotonic()
            if not self.bus.nc.is_connected:  # deaf, not a fleet gone dead (a NATS restart)
                self.fleet.hold(now)
            else:
                for worker_id in self.fleet.workers.forget_dead(now):
                    await self.failover.worker_died(worker_id)
                await self.failover.drain()
                await self.reporter.offline_alerts(now)
                await self.intake.tend()
                await self.placer.tick(w.request.model for w in self.queues.waiting.values())
                await self.dispatcher.dispatch()  # what aging or freed capacity now lets go
                if self.bus.nc.is_connected:
                    await self.reporter.publish()
            await wait_or_stop(stop, self.settings.heartbeat_s / 2)
