"""Alert rules as pure functions: thresholds with hysteresis, node offline, worker crash loop.

An alert fires once when its value crosses `fire_above` and resolves once when it falls below
`clear_below`; in between nothing is sent, however the value wobbles. No clock inside: times come
from the telemetry or from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from contracts.telemetry import Alert, AlertState, NodeTelemetry, Severity

AlertKey = tuple[str, str, str]  # (rule name, node, what within the node)


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    metric: str  # one of METRICS
    fire_above: float
    clear_below: float
    severity: Severity = Severity.warning

    def __post_init__(self) -> None:
        if self.clear_below > self.fire_above:
            raise ValueError(f"{self.name}: clear_below must not exceed fire_above (hysteresis)")


METRICS = ("gpu_temp_c", "gpu_mem_pct", "cpu_pct", "mem_pct")


def measurements(t: NodeTelemetry) -> dict[tuple[str, str], float]:
    """(metric, what) -> value for everything a rule can watch in one telemetry message."""
    values: dict[tuple[str, str], float] = {("cpu_pct", "node"): t.cpu_pct}
    if t.mem_total_mb:
        values[("mem_pct", "node")] = 100.0 * t.mem_used_mb / t.mem_total_mb
    for g in t.gpus:
        if g.temp_c is not None:
            values[("gpu_temp_c", f"gpu{g.index}")] = g.temp_c
        values[("gpu_mem_pct", f"gpu{g.index}")] = g.mem_pct
    return values


def evaluate_thresholds(
    rules: Iterable[ThresholdRule], telemetry: NodeTelemetry, firing: frozenset[AlertKey]
) -> tuple[list[Alert], frozenset[AlertKey]]:
    """The transitions this telemetry causes, and the set of alerts firing afterwards."""
    values = measurements(telemetry)
    now_firing = set(firing)
    out: list[Alert] = []
    for rule in rules:
        for (metric, what), value in values.items():
            if metric != rule.metric:
                continue
            key = (rule.name, telemetry.node, what)
            if key not in now_firing and value > rule.fire_above:
                now_firing.add(key)
                out.append(_alert(rule, telemetry, what, value, AlertState.firing, rule.fire_above))
            elif key in now_firing and value < rule.clear_below:
                now_firing.discard(key)
                out.append(_alert(rule, telemetry, what, value, AlertState.resolved, rule.clear_below))
    return out, frozenset(now_firing)


def _alert(
    rule: ThresholdRule, t: NodeTelemetry, what: str, value: float, state: AlertState, threshold: float
) -> Alert:
    verb = "above" if state is AlertState.firing else "back below"
    return Alert(
        name=rule.name,
        node=t.node,
        severity=rule.severity,
        state=state,
        subject_key=what,
        value=round(value, 2),
        threshold=threshold,
        ts_ms=t.ts_ms,
        message=f"{rule.metric} of {what} on {t.node} is {value:.1f}, {verb} {threshold:g}",
    )


def evaluate_offline(
    last_seen_ms: Mapping[str, int], now_ms: int, dead_after_ms: int, firing: frozenset[AlertKey]
) -> tuple[list[Alert], frozenset[AlertKey]]:
    """A node silent for `dead_after_ms` is offline (fires once); its next telemetry resolves it."""
    now_firing = set(firing)
    out = []
    for node, seen in sorted(last_seen_ms.items()):
        key = ("node_offline", node, "node")
        silent = now_ms - seen > dead_after_ms
        if silent and key not in now_firing:
            now_firing.add(key)
            out.append(
                Alert(
                    name="node_offline",
                    node=node,
                    severity=Severity.critical,
                    state=AlertState.firing,
                    subject_key="node",
                    value=(now_ms - seen) / 1000,
                    threshold=dead_after_ms / 1000,
                    ts_ms=now_ms,
                    message=f"no telemetry from {node} for {(now_ms - seen) / 1000:.1f}s",
                )
            )
        elif not silent and key in now_firing:
            now_firing.discard(key)
            out.append(
                Alert(
                    name="node_offline",
                    node=node,
                    severity=Severity.critical,
                    state=AlertState.resolved,
                    subject_key="node",
                    ts_ms=now_ms,
                    message=f"{node} is reporting again",
                )
            )
    return out, frozenset(now_firing)


@dataclass
class CrashLoop:
    """Counts restarts of each worker (a new `started_ms` under the same id) within a window."""

    max_restarts: int = 3
    window_ms: int = 300_000
    starts: dict[str, list[int]] = field(default_factory=dict)
    firing: set[str] = field(default_factory=set)

    def observe(self, worker_id: str, node: str, started_ms: int, now_ms: int) -> list[Alert]:
        seen = self.starts.setdefault(worker_id, [])
        if started_ms not in seen:
            seen.append(started_ms)
        seen[:] = [s for s in seen if now_ms - s <= self.window_ms]
        restarts = len(seen) - 1
        if restarts >= self.max_restarts and worker_id not in self.firing:
            self.firing.add(worker_id)
            return [
                Alert(
                    name="worker_crash_loop",
                    node=node,
                    severity=Severity.critical,
                    state=AlertState.firing,
                    subject_key=worker_id,
                    value=restarts,
                    threshold=self.max_restarts,
                    ts_ms=now_ms,
                    message=f"worker {worker_id} restarted {restarts} times in {self.window_ms // 1000}s",
                )
            ]
        if restarts == 0 and worker_id in self.firing:
            self.firing.discard(worker_id)
            return [
                Alert(
                    name="worker_crash_loop",
                    node=node,
                    severity=Severity.critical,
                    state=AlertState.resolved,
                    subject_key=worker_id,
                    ts_ms=now_ms,
                    message=f"worker {worker_id} has been stable for {self.window_ms // 1000}s",
                )
            ]
        return []
