"""Alert rules: fire once, clear once, with hysteresis; node offline; worker crash loop."""

from __future__ import annotations

import pytest

from contracts.telemetry import AlertState, GpuSample, NodeTelemetry
from services.common.alert_rules import AlertKey, CrashLoop, ThresholdRule, evaluate_offline, evaluate_thresholds

RULE = ThresholdRule("gpu_temperature", "gpu_temp_c", fire_above=85, clear_below=80)


def telemetry(temp: float, ts: int = 0) -> NodeTelemetry:
    gpu = GpuSample(index=0, util_pct=0, mem_used_mb=0, mem_total_mb=1, temp_c=temp)
    return NodeTelemetry(node="n1", ts_ms=ts, cpu_pct=0, mem_used_mb=0, mem_total_mb=1, gpus=(gpu,))


def test_fires_once_and_clears_once_through_a_wobble() -> None:
    firing: frozenset[AlertKey] = frozenset()
    events = []
    for temp in [70, 86, 88, 84, 86, 81, 79, 83, 79]:
        out, firing = evaluate_thresholds([RULE], telemetry(temp), firing)
        events += [(a.state, a.value) for a in out]
    assert events == [(AlertState.firing, 86), (AlertState.resolved, 79)]


def test_hysteresis_must_make_sense() -> None:
    with pytest.raises(ValueError):
        ThresholdRule("x", "cpu_pct", fire_above=50, clear_below=60)


def test_node_offline_fires_once_and_resolves_when_it_reports() -> None:
    out, firing = evaluate_offline({"n1": 0, "n2": 9000}, now_ms=10_000, dead_after_ms=3000, firing=frozenset())
    assert [(a.node, a.state) for a in out] == [("n1", AlertState.firing)]
    out, firing = evaluate_offline({"n1": 0, "n2": 9000}, now_ms=11_000, dead_after_ms=3000, firing=firing)
    assert out == []
    out, firing = evaluate_offline({"n1": 10_500, "n2": 10_600}, now_ms=11_000, dead_after_ms=3000, firing=firing)
    assert [(a.node, a.state) for a in out] == [("n1", AlertState.resolved)]


def test_crash_loop_after_three_restarts_in_the_window() -> None:
    loop = CrashLoop(max_restarts=3, window_ms=60_000)
    fired = [a for t in (0, 1000, 2000, 3000) for a in loop.observe("w1", "n1", started_ms=t, now_ms=t + 10)]
    assert [a.state for a in fired] == [AlertState.firing]
    assert loop.observe("w1", "n1", started_ms=3000, now_ms=30_000) == []  # same process: no news
    cleared = loop.observe("w1", "n1", started_ms=3000, now_ms=62_500)
    assert [a.state for a in cleared] == [AlertState.resolved]
