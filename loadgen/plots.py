"""The report's plots, drawn headless with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadgen.promview import GAUGES, name_in, totals
from loadgen.runner import RunResult
from loadgen.spec import TEXT_KINDS
from loadgen.stats import measured, throughput_series


def _latencies(result: RunResult) -> tuple[list[list[float]], list[str]]:
    """Per class, TTFT (text), first byte or first progress where there is one, and E2E, in ms."""
    kept = measured(result.records)
    data, labels = [], []
    for cls in result.spec.classes:
        done = [r for r in kept if r.cls == cls.name and r.ok]
        if not done:
            continue
        firsts = [r.ttft * 1000 for r in done if r.ttft is not None]
        if firsts:
            word = "TTFT" if cls.kind in TEXT_KINDS else ("first byte" if cls.kind == "speech" else "first progress")
            data.append(firsts)
            labels.append(f"{cls.name}\n{word}")
        data.append([r.latency * 1000 for r in done])
        labels.append(f"{cls.name}\nE2E")
    return data, labels


def plot_run(path: Path, result: RunResult, metrics: list[dict[str, Any]] | None = None) -> Path:
    """Latency distributions per class, throughput over time per class, and ModalMesh's own gauges."""
    panels = 3 if metrics else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), dpi=80)
    data, labels = _latencies(result)
    if data:
        axes[0].boxplot(data, showfliers=True, whis=(1, 99))
        axes[0].set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        axes[0].set_yscale("log")
    axes[0].set_ylabel("ms (box: p25-p75, whiskers: p1-p99)")
    axes[0].set_title("Latency per class")
    kept = measured(result.records)
    span = max((r.end for r in kept), default=1.0)
    bucket = max(1.0, span / 15)
    for cls in result.spec.classes:
        series = throughput_series([r for r in kept if r.cls == cls.name], bucket)
        axes[1].plot([p["t"] for p in series], [p["requests_per_s"] for p in series], label=cls.name)
    axes[1].set_xlabel("s")
    axes[1].set_ylabel("completed requests/s")
    axes[1].set_title(f"Throughput over time ({bucket:.1f} s buckets)")
    axes[1].legend(fontsize=7)
    if metrics:
        for name in GAUGES:
            points = [(s["t"], totals(s["values"], name)) for s in metrics if name_in(s, name)]
            if any(v for _, v in points):
                axes[2].plot([t for t, _ in points], [v for _, v in points], label=name.removeprefix("modalmesh_"))
        axes[2].set_xlabel("s")
        axes[2].set_title("ModalMesh: in flight and queued")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sweep(path: Path, points: list[dict[str, Any]]) -> Path:
    """The latency-throughput curve: each class's p50 and p99 latency (TTFT for text) against the
    throughput it reached at each load of the sweep."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=80)
    names = list(points[0]["summary"]["classes"]) if points else []
    for name in names:
        xs, p50, p99 = [], [], []
        for point in points:
            figures = point["summary"]["classes"][name]
            dist = figures.get("ttft_ms") if figures["kind"] in TEXT_KINDS else figures.get("e2e_ms")
            if not dist or not dist.get("n"):
                continue
            xs.append(figures["requests_per_s"])
            p50.append(dist["p50"])
            p99.append(dist["p99"])
        line = ax.plot(xs, p50, marker="o", label=f"{name} p50")[0]
        ax.plot(xs, p99, marker="x", linestyle="--", color=line.get_color(), label=f"{name} p99")
    ax.set_xlabel("achieved requests/s")
    ax.set_ylabel("ms (TTFT for text, E2E otherwise)")
    ax.set_yscale("log")
    ax.set_title("Sweep: latency against throughput")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
