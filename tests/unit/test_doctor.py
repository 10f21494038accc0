"""The doctor's judgements on readings it is given: driver and torch versions, domain shares, disk
thresholds, the report's table and JSON, and the server time it parses for the clock check."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from contracts.telemetry import GpuInfo, GpuSample
from services.common.confinement import ram_mb
from services.doctor.bus import redacted, server_time
from services.doctor.node import GpuView, TorchView, check_disk, check_domains, check_driver, check_gpus
from services.doctor.report import Check, Report, Status, table
from services.doctor.smi import agreement, parse_csv

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", vram_mb=81559.0)
H100_NOW = GpuSample(index=0, name=H100.name, util_pct=3, mem_used_mb=500, mem_total_mb=81559, temp_c=31)
DRIVER = {"driver": "580.159.04", "driver_cuda": "13.0"}


def _gpu_node() -> GpuView:
    return GpuView(source="nvml", static=[H100], samples=[H100_NOW])


def test_torch_built_for_a_newer_cuda_than_the_driver_fails() -> None:
    check = check_driver(_gpu_node(), {**DRIVER, "driver_cuda": "12.4"}, TorchView("2.11.0", "13.0", 1))
    assert check.status is Status.fail and "newer than the driver supports" in check.reason


def test_a_cpu_build_of_torch_on_a_gpu_node_fails() -> None:
    check = check_driver(_gpu_node(), DRIVER, TorchView("2.11.0+cpu", None, 0))
    assert check.status is Status.fail and "cannot use the GPU" in check.reason


def test_a_matching_driver_and_torch_pass_and_say_both_versions() -> None:
    check = check_driver(_gpu_node(), DRIVER, TorchView("2.11.0+cu130", "13.0", 1))
    assert check.status is Status.ok
    assert "580.159.04" in check.reason and "CUDA 13.0" in check.reason and "1 CUDA device" in check.reason


def test_no_driver_on_a_cpu_node_is_a_warning() -> None:
    check = check_driver(GpuView(), {}, TorchView("2.13.0+cpu", None, 0))
    assert check.status is Status.warn and "no NVIDIA driver" in check.reason


def test_a_hot_gpu_is_a_warning() -> None:
    hot = H100_NOW.model_copy(update={"temp_c": 91.0, "throttle_reasons": ("hw_thermal_slowdown",)})
    check = check_gpus(GpuView(source="nvml", static=[H100], samples=[hot]))
    assert check.status is Status.warn and "91 °C" in check.reason and "hw_thermal_slowdown" in check.reason


def test_domain_shares_in_gigabytes_of_each_gpu_and_of_ram(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text("domains:\n  image: {gpu_memory_fraction: 0.25}\n  speech: {ram_fraction: 0.1}\n")
    check = check_domains(_gpu_node(), path)
    assert check.status is Status.ok
    assert check.details["domains"]["image"]["gpu_mb"] == [round(0.25 * 81559)]
    assert check.details["domains"]["speech"]["ram_mb"] == round(0.1 * ram_mb())
    assert "image: 0.25 of each GPU = 19.9 GB" in check.reason


def test_a_gpu_share_on_a_cpu_node_says_there_is_no_gpu(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text("domains:\n  image: {gpu_memory_fraction: 0.3}\n")
    check = check_domains(GpuView(), path)
    assert check.status is Status.ok and "no GPU here" in check.reason
    assert check.details["domains"]["image"]["gpu_mb"] == []


def test_a_bad_domains_file_fails_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text("domains:\n  image: {gpu_memory_fraction: 3}\n")
    check = check_domains(GpuView(), path)
    assert check.status is Status.fail and str(path) in check.reason


def test_disk_below_the_thresholds_warns_then_fails(tmp_path: Path) -> None:
    assert check_disk([tmp_path], warn_below_gb=1e9, fail_below_gb=0).status is Status.warn
    failed = check_disk([tmp_path], warn_below_gb=1e9, fail_below_gb=1e9)
    assert failed.status is Status.fail and "no model fits" in failed.reason
    # A cache folder not made yet is judged by the filesystem it will be made on.
    later = check_disk([tmp_path / "models" / "not-yet"], warn_below_gb=0, fail_below_gb=0)
    assert later.status is Status.ok
    assert later.details["folders"][str(tmp_path / "models" / "not-yet")]["checked_at"] == str(tmp_path)


def test_the_report_fails_when_one_check_fails_and_its_json_says_so() -> None:
    report = Report(
        node="n1",
        checks=(
            Check(name="gpu", status=Status.warn, reason="no GPU"),
            Check(name="nats", status=Status.fail, reason="refused the login " + "word " * 40),
        ),
    )
    body = json.loads(report.as_json())
    assert body["ok"] is False and body["counts"] == {"ok": 0, "warn": 1, "fail": 1}
    assert [c["status"] for c in body["checks"]] == ["warn", "fail"]
    text = table(report, width=80)
    assert "FAIL" in text.splitlines()[-1]
    assert all(len(line) <= 80 for line in text.splitlines())  # long reasons wrap in their column


def test_server_time_keeps_nanoseconds_and_zones() -> None:
    base = datetime(2026, 12, 6, 20, 0, 0, tzinfo=timezone.utc).timestamp()
    assert server_time("2026-12-06T20:00:00.123456789Z") == pytest.approx(base + 0.123456789, abs=1e-6)
    assert server_time("2026-12-06T21:00:00+01:00") == pytest.approx(base)
    with pytest.raises(ValueError):
        server_time("yesterday")


def test_passwords_never_reach_the_report() -> None:
    shown = redacted("nats://worker:s3cret@10.0.0.1:4222,nats://10.0.0.2:4222")
    assert "s3cret" not in shown and "worker:***@10.0.0.1:4222" in shown


SMI_CSV = "0, GPU-1234, NVIDIA H100 80GB HBM3, 520, 81559, 4, 33, 71.52, 345, 2619\n"


def test_nvidia_smi_readings_agree_with_nvml_within_their_tolerances() -> None:
    [row] = parse_csv(SMI_CSV)
    assert row["uuid"] == "GPU-1234" and row["power.draw"] == "71.52"
    nvml = H100_NOW.model_copy(update={"power_w": 70.0, "sm_clock_mhz": 345.0, "mem_clock_mhz": 2619.0})
    fields = agreement(nvml, row, nvml.model_copy(update={"mem_used_mb": 530.0}))
    assert fields["memory.used"]["agrees"] and fields["power.draw"]["agrees"]
    assert fields["temperature.gpu"] == {"nvml": [31, 31], "smi": 33.0, "tolerance": 2.0, "agrees": True}
    off = agreement(
        nvml.model_copy(update={"mem_used_mb": 9000.0}), row, nvml.model_copy(update={"mem_used_mb": 9000.0})
    )
    assert off["memory.used"]["agrees"] is False


def test_a_reading_nvidia_smi_does_not_support_is_left_unjudged() -> None:
    [row] = parse_csv(SMI_CSV.replace("71.52", "[N/A]"))
    assert agreement(H100_NOW, row, H100_NOW)["power.draw"]["agrees"] is None
    with pytest.raises(ValueError, match="expected 10 fields"):
        parse_csv("0, GPU-1234, H100\n")


def test_a_jetson_is_judged_by_whether_torch_sees_its_gpu_not_by_nvml() -> None:
    orin = GpuView(source="jtop", static=[GpuInfo(index=0, name="Jetson AGX Orin", vram_mb=65536.0)])
    assert check_driver(orin, {}, TorchView("2.5.0a0+nv24.08", "12.6", 1)).status is Status.ok
    cpu_torch = check_driver(orin, {}, TorchView("2.5.0", None, 0))
    assert cpu_torch.status is Status.fail and "NVIDIA's torch wheel" in cpu_torch.reason


def test_modalmesh_doctor_is_the_console_script_and_has_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import entry_points

    from services.doctor.cli import main

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "modalmesh"]
    assert script.value == "services.doctor.cli:main"
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert all(option in shown for option in ("--json", "--engines", "--skip-engines", "--nats-url"))
    with pytest.raises(SystemExit) as refused:
        main(["doctor", "--engines", "llama_cpp,warp_drive"])
    assert refused.value.code == 2 and "warp_drive" in capsys.readouterr().err
