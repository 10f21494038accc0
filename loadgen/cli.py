"""`modalmesh-load`: run a mix, sweep loads, search for the SLO boundary, or compare two runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen.promview import Sampler, speaks_modalmesh, urls_from_scrape_config
from loadgen.record import Record
from loadgen.report import compare, flat_figures, load_summary, rewrite_run, write_json, write_run
from loadgen.runner import Run, RunResult
from loadgen.search import By, slo_search, sweep
from loadgen.spec import PromptSource, RunSpec, Shape, Slo, TargetNotAllowed, load_spec, parse_class
from loadgen.stats import summarize

COMMANDS = ("run", "sweep", "slo-search", "compare", "report")
EXAMPLE = """examples:
  modalmesh-load --target http://127.0.0.1:8000 --class chat:tiny-llama:4 --class embedding::2 \\
      --class speech:espeak:1 --concurrency 4 --requests 60
  modalmesh-load run --spec mix.yaml --rate 2 --burstiness 0.5
  modalmesh-load sweep --spec mix.yaml --rates 0.5,1,2,4
  modalmesh-load slo-search --spec mix.yaml --by concurrency --low 1 --high 32
  modalmesh-load compare .data/load/A .data/load/B
  modalmesh-load report .data/load/A          (figures, plots and HTML again from the saved requests)
"""


def _load_options(parser: argparse.ArgumentParser) -> None:
    """The options every load-running command shares. Defaults are None so a spec file's values stand
    unless a flag is given."""
    parser.add_argument("--spec", type=Path, help="YAML or JSON run spec (flags override its values)")
    parser.add_argument("--target", help="base URL of the server (default http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="bearer key (default $MODALMESH_API_KEY, else $OPENAI_API_KEY)")
    parser.add_argument("--allow-host", action="append", default=[], help="a non-loopback host you mean to load")
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="KIND[:MODEL[:WEIGHT]]",
        help="a request class: chat, completion, embedding, image, speech, video or vision (repeat to mix)",
    )
    parser.add_argument("--max-tokens", type=int, help="text classes: tokens to generate")
    parser.add_argument("--prompt-tokens", type=int, help="random prompts of this many words")
    parser.add_argument("--prompt-file", type=Path, help="prompts from a file instead of random ones")
    parser.add_argument("--prompt-format", choices=("jsonl", "sharegpt"), default="jsonl")
    parser.add_argument("--slo-ttft-ms", type=float)
    parser.add_argument("--slo-tpot-ms", type=float)
    parser.add_argument("--slo-e2e-ms", type=float)
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, help="fixed concurrency: that many requests in flight")
    shape.add_argument("--rate", type=float, help="requests per second, gamma-distributed arrivals")
    parser.add_argument("--burstiness", type=float, help="gamma shape of the arrivals: 1 Poisson, <1 burstier")
    parser.add_argument("--end-rate", type=float, help="ramp the rate linearly from --rate to this over the run")
    parser.add_argument("--max-concurrency", type=int, help="rate shapes: cap on requests in flight")
    parser.add_argument("--requests", type=int, help="measured requests (default 100)")
    parser.add_argument("--duration", type=float, help="stop sending after this many seconds (default 300)")
    parser.add_argument("--warmup", type=int, help="requests per class sent first and left out (default 1)")
    parser.add_argument("--timeout", type=float, help="one request's limit in seconds")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", type=Path, help="folder for the results (default .data/load/<time>)")
    parser.add_argument("--no-live", action="store_true", help="no live view (plain lines instead)")
    parser.add_argument("--metrics-url", action="append", default=[], help="Prometheus endpoints to sample")
    parser.add_argument(
        "--scrape-config",
        type=Path,
        help="sample the gateway and scheduler named in this Prometheus config (make run: .data/prometheus.yml)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not sample the target's /metrics")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modalmesh-load",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _load_options(sub.add_parser("run", help="one run of the mix"))
    sweep_parser = sub.add_parser("sweep", help="the mix at several loads")
    _load_options(sweep_parser)
    loads = sweep_parser.add_mutually_exclusive_group(required=True)
    loads.add_argument("--rates", help="comma-separated requests per second")
    loads.add_argument("--concurrencies", help="comma-separated concurrencies")
    search = sub.add_parser("slo-search", help="the highest load at which every class meets its SLO")
    _load_options(search)
    search.add_argument("--by", choices=("rate", "concurrency"), default="rate")
    search.add_argument("--low", type=float, required=True)
    search.add_argument("--high", type=float, required=True)
    search.add_argument("--iterations", type=int, default=5)
    cmp = sub.add_parser("compare", help="two runs' key figures side by side")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--json", action="store_true", help="print the rows as JSON")
    again = sub.add_parser("report", help="a run's summary, plots and HTML again from its requests.json")
    again.add_argument("run", type=Path)
    return parser


def _shape(args: argparse.Namespace, base: Shape) -> Shape:
    update: dict[str, Any] = {}
    if args.concurrency is not None:
        update.update(kind="concurrency", concurrency=args.concurrency)
    if args.rate is not None:
        update.update(kind="ramp" if args.end_rate else "rate", rate=args.rate)
    for name in ("burstiness", "end_rate", "max_concurrency"):
        if getattr(args, name) is not None:
            update[name] = getattr(args, name)
    return Shape.model_validate({**base.model_dump(), **update})


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """A spec file's values with the flags laid over them, or the flags alone."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "target": args.target,
            "requests": args.requests,
            "duration_s": args.duration,
            "warmup": args.warmup,
            "timeout_s": args.timeout,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    key = args.api_key or os.environ.get("MODALMESH_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if key:
        overrides["api_key"] = key
    if args.allow_host:
        overrides["allow_hosts"] = tuple(args.allow_host)
    if args.classes:
        defaults: dict[str, Any] = {"max_tokens": args.max_tokens}
        if args.prompt_file:
            defaults["prompt"] = PromptSource(source=args.prompt_format, path=args.prompt_file)
        elif args.prompt_tokens:
            defaults["prompt"] = PromptSource(tokens=args.prompt_tokens)
        slo = Slo(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms, e2e_ms=args.slo_e2e_ms)
        overrides["classes"] = tuple(parse_class(text, {**defaults, "slo": slo}) for text in args.classes)
    if args.spec:
        spec = load_spec(args.spec, overrides)
    elif "classes" in overrides:
        spec = RunSpec.model_validate(overrides)
    else:
        raise SystemExit("modalmesh-load: give --spec FILE or at least one --class")
    return spec.with_shape(_shape(args, spec.shape))


class Driver:
    """Runs one load at a time: live view, metrics sampling, files, and a summary table at the end."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.multi = args.command != "run"  # several runs: each in its own folder under `out`
        self.live = not args.no_live and sys.stdout.isatty()
        self.metrics_urls: list[str] = list(args.metrics_url)
        if args.scrape_config:
            self.metrics_urls += urls_from_scrape_config(args.scrape_config)
        self.auto_metrics = not args.no_metrics
        self.out = out
        self.console = Console()
        self.runs = 0

    async def run_at(self, spec: RunSpec) -> dict[str, Any]:
        out = self.out / f"run-{self.runs:02d}" if self.multi else self.out
        self.runs += 1
        summary, files = await self.execute(spec, out)
        self.console.print(summary_table(summary, shape_label(spec.shape)))
        self.console.print(f"results in {out} (report: {files['report_html'].name})")
        return summary

    async def execute(self, spec: RunSpec, out: Path) -> tuple[dict[str, Any], dict[str, Path]]:
        run = Run(spec, on_record=None if self.live else self._line)
        urls = self.metrics_urls or (
            [f"{spec.target.rstrip('/')}/metrics"] if self.auto_metrics and speaks_modalmesh(spec.target) else []
        )
        sampler = Sampler(urls, 1.0, run.progress.elapsed) if urls else None
        sampling = asyncio.create_task(sampler.run()) if sampler else None
        if sampler:
            await sampler.ready.wait()  # the counters' first values come before the first request
        task: asyncio.Task[RunResult] = asyncio.create_task(run.execute())
        if self.live:
            from loadgen.live import show

            await show(run.progress, {c.name: c.kind for c in spec.classes}, task)
        result = await task
        if sampler and sampling:
            sampler.stop()
            await sampling
        classes = {c.name: (c.kind, c.slo) for c in spec.classes}
        summary = summarize(result.records, classes)
        files = write_run(out, result, summary, sampler.samples if sampler else None)
        return summary, files

    def _line(self, record: Record) -> None:
        state = "ok" if record.ok else record.error or f"http_{record.status}"
        print(f"{record.end:8.2f}s {record.cls:<12} {record.latency * 1000:9.1f} ms {state}", flush=True)


def shape_label(shape: Shape) -> str:
    if shape.kind == "concurrency":
        return f"concurrency {shape.concurrency}"
    label = f"rate {shape.rate:g}/s"
    return label + (f" to {shape.end_rate:g}/s" if shape.kind == "ramp" else "") + f" burstiness {shape.burstiness:g}"


def summary_table(summary: dict[str, Any], title: str) -> Table:
    rows = flat_figures(summary)
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    table = Table(title=title)
    table.add_column("figure")
    for name in rows:
        table.add_column(name, justify="right")
    for column in columns:
        table.add_row(column, *(f"{rows[n][column]:.4g}" if column in rows[n] else "" for n in rows))
    return table


def default_out() -> Path:
    return Path(".data/load") / time.strftime("%Y%m%d-%H%M%S")


async def run_command(args: argparse.Namespace) -> None:
    """run, sweep or slo-search, as parsed."""
    spec = spec_from_args(args)
    out = args.out or default_out()
    driver = Driver(args, out)
    if args.command == "run":
        await driver.run_at(spec)
        return
    if args.command == "sweep":
        by: By = "rate" if args.rates else "concurrency"
        loads = [float(x) for x in (args.rates or args.concurrencies).split(",") if x.strip()]
        points = await sweep(spec, by, loads, driver.run_at)
        from loadgen.plots import plot_sweep

        write_json(out / "sweep.json", points)
        plot_sweep(out / "sweep.png", points)
        print(f"sweep: {out / 'sweep.json'}, {out / 'sweep.png'}")
        return
    found = await slo_search(spec, args.by, args.low, args.high, args.iterations, driver.run_at)
    write_json(out / "slo_search.json", found)
    print(json.dumps({"by": found["by"], "best": found["best"], "probed": [s["load"] for s in found["steps"]]}))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in {"-h", "--help"}):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    if args.command == "report":
        files = rewrite_run(args.run)
        print(f"rewrote {', '.join(sorted(p.name for p in files.values()))} in {args.run}")
        return
    if args.command == "compare":
        rows = compare(load_summary(args.a), load_summary(args.b))
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        table = Table(title=f"A = {args.a}   B = {args.b}")
        for column in ("class", "figure", "A", "B", "B vs A"):
            table.add_column(column, justify="left" if column in {"class", "figure"} else "right")
        for row in rows:
            change = f"{row['change_pct']:+.1f}%" if row["change_pct"] is not None else ""
            table.add_row(row["class"], row["figure"], f"{row['a']:.4g}", f"{row['b']:.4g}", change)
        Console().print(table)
        return
    try:
        asyncio.run(run_command(args))
    except TargetNotAllowed as exc:
        raise SystemExit(f"modalmesh-load: {exc}") from None
