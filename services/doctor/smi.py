"""The monitor's NVML source against `nvidia-smi`'s own readings of the same moment, for proving the
telemetry path on a real GPU: `python -m services.doctor.smi --out nvml_vs_smi.json`.

NVML is read just before and just after nvidia-smi runs; a field agrees when nvidia-smi's value lies
within the two NVML readings widened by its tolerance (memory and clocks move little in a second,
utilization and power may)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from contracts.telemetry import GpuSample
from services.monitor.sources.nvml import NvmlSource

# nvidia-smi's query field -> (the GpuSample field, the tolerance in that field's unit)
FIELDS: dict[str, tuple[str, float]] = {
    "memory.used": ("mem_used_mb", 16.0),
    "memory.total": ("mem_total_mb", 1.0),
    "utilization.gpu": ("util_pct", 10.0),
    "temperature.gpu": ("temp_c", 2.0),
    "power.draw": ("power_w", 15.0),
    "clocks.sm": ("sm_clock_mhz", 60.0),
    "clocks.mem": ("mem_clock_mhz", 60.0),
}
QUERY = ("index", "uuid", "name", *FIELDS)


def parse_csv(text: str) -> list[dict[str, str]]:
    """`nvidia-smi --query-gpu=<QUERY> --format=csv,noheader,nounits` output, one dict per GPU."""
    rows = []
    for line in text.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(QUERY):
            raise ValueError(f"expected {len(QUERY)} fields, got {len(values)}: {line!r}")
        rows.append(dict(zip(QUERY, values, strict=True)))
    return rows


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def agreement(before: GpuSample, smi: dict[str, str], after: GpuSample) -> dict[str, Any]:
    """Field by field: NVML before and after, nvidia-smi's value, and whether they agree."""
    fields: dict[str, Any] = {}
    for query, (name, tolerance) in FIELDS.items():
        a, b, s = getattr(before, name), getattr(after, name), _number(smi[query])
        if a is None or b is None or s is None:
            fields[query] = {"nvml": [a, b], "smi": smi[query], "agrees": None}
            continue
        low, high = min(a, b) - tolerance, max(a, b) + tolerance
        fields[query] = {"nvml": [a, b], "smi": s, "tolerance": tolerance, "agrees": low <= s <= high}
    return fields


def compare(smi_command: str = "nvidia-smi") -> dict[str, Any]:
    source = NvmlSource()
    why_not = source.open()
    if why_not is not None:
        return {"ok": False, "reason": f"NVML: {why_not}"}
    if shutil.which(smi_command) is None:
        source.close()
        return {"ok": False, "reason": f"{smi_command} is not on the PATH"}
    try:
        before = source.read().gpus
        done = subprocess.run(
            [smi_command, f"--query-gpu={','.join(QUERY)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        after = source.read().gpus
    finally:
        source.close()
    rows = parse_csv(done.stdout)
    gpus: list[dict[str, Any]] = []
    for b, row, a in zip(before, rows, after, strict=True):
        same = b.uuid == row["uuid"] and b.name == row["name"]
        gpus.append({"index": b.index, "name": b.name, "same_gpu": same, "fields": agreement(b, row, a)})
    verdicts = [f["agrees"] for g in gpus for f in g["fields"].values() if f["agrees"] is not None]
    return {"ok": all(g["same_gpu"] for g in gpus) and all(verdicts), "gpus": gpus, "smi_csv": done.stdout}


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--out", type=Path, help="also write the JSON here")
    parsed = args.parse_args(argv)
    result = compare()
    text = json.dumps(result, indent=2)
    print(text)
    if parsed.out:
        parsed.out.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
