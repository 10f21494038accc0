"""`modalmesh`: the operator's command line. `modalmesh doctor` checks this node before it joins."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from functools import partial
from pathlib import Path

from services.doctor import bus, engines, node
from services.doctor.report import Check, Report, table, timed, timed_async
from services.workers.settings import WorkerSettings


def _names(text: str) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(engines.PROBES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {', '.join(unknown)}: one of {', '.join(engines.PROBES)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="modalmesh", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser(
        "doctor",
        help="check this node: GPUs, driver, engines, domains, disk, NATS and clock",
        description="Check this node before it joins the fleet. Exit status 1 when a check fails.",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    doctor.add_argument(
        "--engines",
        type=_names,
        default=list(engines.PROBES),
        help=f"engines to load and run, comma separated (default: all of {', '.join(engines.PROBES)})",
    )
    doctor.add_argument("--skip-engines", action="store_true", help="check no engine (they take seconds each)")
    doctor.add_argument(
        "--nats-url", help="NATS URL(s) to check (default: MODALMESH_NATS_URL, as the services read it)"
    )
    doctor.add_argument("--domains", type=Path, help="domains file (default: MODALMESH_DOMAINS_FILE)")
    doctor.add_argument("--device", help="device for the engines (default: CUDA where torch sees one, else cpu)")
    doctor.add_argument("--timeout", type=float, default=120.0, help="seconds each engine may take to load and run")
    doctor.add_argument("--nats-timeout", type=float, default=3.0, help="seconds to wait for NATS")
    doctor.add_argument("--disk-warn-gb", type=float, default=20.0, help="warn with less free for models (GB)")
    doctor.add_argument("--disk-fail-gb", type=float, default=1.0, help="fail with less free for models (GB)")
    return top


async def doctor(args: argparse.Namespace) -> Report:
    settings = WorkerSettings()
    started = time.perf_counter()
    gpus = node.look()  # read once: the GPU, driver and domain checks all judge it
    looked_s = time.perf_counter() - started
    torch_view = node.look_torch()
    torch_s = time.perf_counter() - started - looked_s
    checks: list[Check] = [
        timed("gpu", lambda: node.check_gpus(gpus), plus_s=looked_s),
        timed("driver", lambda: node.check_driver(gpus, node.nvml_versions(), torch_view), plus_s=torch_s),
        timed("domains", lambda: node.check_domains(gpus, args.domains)),
        timed("torch-cap", lambda: node.check_torch_cap(torch_view)),
        timed("disk", lambda: node.check_disk(_model_folders(settings), args.disk_warn_gb, args.disk_fail_gb)),
    ]
    url = args.nats_url or settings.nats_url
    started = time.perf_counter()
    nats_check, nc = await bus.check_nats(url, args.nats_timeout)
    checks.append(nats_check.model_copy(update={"seconds": round(time.perf_counter() - started, 3)}))
    try:
        checks.append(await timed_async("clock", lambda: bus.check_clock(nc)))
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
    if not args.skip_engines:
        device = args.device or engines.best_device()
        for name in args.engines:
            checks.append(
                await timed_async(f"engine:{name}", partial(engines.check_engine, name, device, args.timeout))
            )
    return Report(node=settings.node, checks=tuple(checks))


def _model_folders(settings: WorkerSettings) -> list[Path]:
    from services.workers.tiny_model import cache_dir

    return list(dict.fromkeys([settings.models_dir, cache_dir()]))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    report = asyncio.run(doctor(args))
    print(report.as_json() if args.json else table(report))
    return 1 if report.failed else 0
