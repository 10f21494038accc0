"""What a run leaves behind: every request and the summary as JSON and CSV, text classes in `vllm bench
serve`'s result shape, a PNG and HTML report with plots, and the comparison of two runs."""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
import statistics
from pathlib import Path
from typing import Any

from loadgen.record import CSV_FIELDS, Record, csv_row
from loadgen.runner import RunResult
from loadgen.spec import TEXT_KINDS, RequestClass, RunSpec
from loadgen.stats import measured, percentile, summarize, tpot, window

# The figures `compare` and the summary CSV show for each class, when the class has them.
KEY_FIGURES = (
    ("requests_per_s", None),
    ("goodput_per_s", None),
    ("output_tokens_per_s", None),
    ("inputs_per_s", None),
    ("images_per_s", None),
    ("ttft_ms", "p50"),
    ("ttft_ms", "p99"),
    ("itl_ms", "p50"),
    ("tpot_ms", "p50"),
    ("e2e_ms", "p50"),
    ("e2e_ms", "p99"),
    ("first_progress_ms", "p50"),
    ("first_byte_ms", "p50"),
    ("real_time_factor", "p50"),
    ("queue_wait_ms", "p50"),
)


def flat_figures(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """class -> {"ttft_ms.p50": 12.3, ...}, the overall figures under "all"."""
    out: dict[str, dict[str, float]] = {}
    for name, figures in [*summary["classes"].items(), ("all", summary["overall"])]:
        row: dict[str, float] = {}
        for figure, stat in KEY_FIGURES:
            value = figures.get(figure)
            if stat is not None:
                value = value.get(stat) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                row[f"{figure}.{stat}" if stat else figure] = float(value)
        row["completed"], row["failed"] = figures["completed"], figures["failed"]
        out[name] = row
    return out


def vllm_result(records: list[Record], cls: RequestClass, shape: dict[str, Any], goodput: float) -> dict[str, Any]:
    """One text class in the JSON `vllm bench serve --save-result` writes (times in seconds in the lists,
    ms in the figures; failed requests carry ttft 0 and their error, as vLLM's do)."""
    done = [r for r in records if r.ok]
    span = window(records) or 1.0
    lists = {
        "ttft": [r.ttft for r in done if r.ttft is not None],
        "tpot": [t for r in done if (t := tpot(r)) is not None],
        "itl": [i for r in done for i in r.itls],
        "e2el": [r.latency for r in done],
    }
    out: dict[str, Any] = {
        "date": datetime.datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": "openai-chat" if cls.kind != "completion" else "openai",
        "backend": "openai-chat" if cls.kind != "completion" else "openai",
        "label": cls.name,
        "model_id": cls.model,
        "tokenizer_id": cls.model,
        "num_prompts": len(records),
        "request_rate": shape.get("rate", "inf") if shape["kind"] != "concurrency" else "inf",
        "burstiness": shape.get("burstiness", 1.0),
        "max_concurrency": shape["concurrency"] if shape["kind"] == "concurrency" else shape.get("max_concurrency"),
        "duration": span,
        "completed": len(done),
        "failed": len(records) - len(done),
        "total_input_tokens": sum(r.input_tokens for r in done),
        "total_output_tokens": sum(r.output_tokens for r in done),
        "request_throughput": len(done) / span,
        "request_goodput": goodput,
        "output_throughput": sum(r.output_tokens for r in done) / span,
        "total_token_throughput": sum(r.input_tokens + r.output_tokens for r in done) / span,
        "input_lens": [r.input_tokens for r in records],
        "output_lens": [r.output_tokens if r.ok else 0 for r in records],
        "ttfts": [r.ttft if r.ok and r.ttft is not None else 0.0 for r in records],
        "itls": [r.itls if r.ok else [] for r in records],
        "generated_texts": ["" for _ in records],
        "errors": [r.error if not r.ok else "" for r in records],
    }
    for metric, values in lists.items():
        ms = [v * 1000 for v in values] or [0.0]
        out[f"mean_{metric}_ms"] = statistics.fmean(ms)
        out[f"median_{metric}_ms"] = statistics.median(ms)
        out[f"std_{metric}_ms"] = statistics.pstdev(ms)
        for q in (90, 99):
            out[f"p{q}_{metric}_ms"] = percentile(ms, q)
    return out


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_run(
    out: Path, result: RunResult, summary: dict[str, Any], metrics: list[dict[str, Any]] | None = None
) -> dict[str, Path]:
    """Every file of a run under `out`; returns them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "requests_json": out / "requests.json",
        "requests_csv": out / "requests.csv",
        "summary_json": out / "summary.json",
        "summary_csv": out / "summary.csv",
    }
    write_json(files["requests_json"], [r.to_dict() for r in result.records])
    with files["requests_csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in result.records)
    document = {
        "spec": result.spec.model_dump(mode="json", exclude={"api_key"}),
        "started_at": result.started_at,
        "duration_s": result.duration_s,
        **summary,
    }
    if metrics:
        from loadgen.promview import summarize as metrics_summary

        document["modalmesh"] = metrics_summary(metrics)
        files["metrics_json"] = out / "metrics.json"
        write_json(files["metrics_json"], metrics)
    write_json(files["summary_json"], document)
    rows = flat_figures(summary)
    columns = sorted({k for row in rows.values() for k in row})
    with files["summary_csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["class", *columns])
        writer.writeheader()
        writer.writerows({"class": name, **row} for name, row in rows.items())
    kept = measured(result.records)
    shape = result.spec.shape.model_dump()
    for cls in result.spec.classes:
        if cls.kind in TEXT_KINDS:
            mine = [r for r in kept if r.cls == cls.name]
            goodput = summary["classes"][cls.name]["goodput_per_s"]
            files[f"vllm_{cls.name}"] = out / f"vllm_{cls.name}.json"
            write_json(files[f"vllm_{cls.name}"], vllm_result(mine, cls, shape, goodput))
    from loadgen.plots import plot_run

    files["report_png"] = plot_run(out / "report.png", result, metrics)
    files["report_html"] = out / "report.html"
    files["report_html"].write_text(html_report(document, files["report_png"]))
    return files


def html_report(document: dict[str, Any], png: Path) -> str:
    """A self-contained page: the plots inline and a table of each class's key figures."""
    rows = flat_figures(document)
    columns = sorted({k for row in rows.values() for k in row})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["class", *columns])
    body = "".join(
        "<tr><td>"
        + html.escape(name)
        + "</td>"
        + "".join(f"<td>{row[c]:.4g}</td>" if c in row else "<td></td>" for c in columns)
        + "</tr>"
        for name, row in rows.items()
    )
    image = base64.b64encode(png.read_bytes()).decode()
    errors = html.escape(json.dumps(document["overall"]["errors"]))
    return (
        "<!doctype html><meta charset=utf-8><title>modalmesh-load report</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}</style>"
        f"<h1>modalmesh-load: {html.escape(document['spec']['target'])}</h1>"
        f"<p>{document['overall']['completed']} completed, {document['overall']['failed']} failed "
        f"in {document['overall']['duration_s']:.1f} s; errors {errors}</p>"
        f"<table><tr>{head}</tr>{body}</table><img alt=report src='data:image/png;base64,{image}'>"
    )


def rewrite_run(out: Path) -> dict[str, Path]:
    """Every file of a run again from its saved spec, requests and metrics (after a change to the figures
    or plots, without sending anything)."""
    document = load_summary(out)
    spec = RunSpec.model_validate(document["spec"])
    records = [Record.from_dict(r) for r in json.loads((out / "requests.json").read_text())]
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
    result = RunResult(spec, records, document["started_at"], document["duration_s"])
    summary = summarize(records, {c.name: (c.kind, c.slo) for c in spec.classes})
    return write_run(out, result, summary, metrics)


def load_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json, from the file or the run's folder."""
    data: dict[str, Any] = json.loads((path / "summary.json" if path.is_dir() else path).read_text())
    return data


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Each class's key figure in run A and in run B, with B's change over A in percent."""
    fa, fb = flat_figures(a), flat_figures(b)
    rows = []
    for name in [n for n in fa if n in fb]:
        for figure in [f for f in fa[name] if f in fb[name]]:
            va, vb = fa[name][figure], fb[name][figure]
            change = (vb - va) / va * 100 if va else None
            rows.append({"class": name, "figure": figure, "a": va, "b": vb, "change_pct": change})
    return rows
