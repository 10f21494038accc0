"""`modalmesh doctor` against a real nats-server (with users and passwords where the test needs a
login), the real monitor sources of this machine and the real llama.cpp engine on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator

import pytest

from services.common.bus import Bus
from services.devstack import NatsServer, free_port
from services.doctor import bus as doctor_bus
from services.doctor import engines, node
from services.doctor.cli import doctor, main, parser
from services.doctor.report import Status
from services.natsauth import ADMIN, NatsUsers

NODE_CHECKS = ["gpu", "driver", "domains", "torch-cap", "disk", "nats", "clock"]


@pytest.fixture(scope="module")
def users_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, NatsUsers]]:
    """A nats-server that lets no one in without a password, as `make run` and compose start it."""
    folder = tmp_path_factory.mktemp("nats-users")
    users = NatsUsers.load_or_create(folder / "auth")
    config = folder / "nats.conf"
    # nats-server reads an include relative to the config file's folder.
    include = users.conf_path.relative_to(folder)
    config.write_text(f'jetstream {{ store_dir: "{folder / "js"}" }}\ninclude "{include}"\n')
    server = NatsServer(store=folder, config=config).start()
    try:
        yield server, users
    finally:
        server.stop()


async def test_the_json_report_of_this_node_against_a_real_server(bus: Bus, nats_url: str) -> None:
    # `bus` has run the bootstrap, so the streams whose info carries the server's time exist.
    report = await doctor(parser().parse_args(["doctor", "--skip-engines", "--nats-url", nats_url]))
    body = json.loads(report.as_json())
    assert set(body) == {"node", "ok", "counts", "checks"}
    assert [c["name"] for c in body["checks"]] == NODE_CHECKS
    for check in body["checks"]:
        assert check["status"] in {"ok", "warn", "fail"} and check["reason"], check
        assert isinstance(check["details"], dict) and check["seconds"] >= 0
    by_name = {c["name"]: c for c in body["checks"]}
    assert by_name["nats"]["status"] == "ok" and by_name["nats"]["details"]["rtt_ms"] > 0
    assert re.fullmatch(r"\d+\.\d+\.\d+", by_name["nats"]["details"]["server_version"])
    assert by_name["clock"]["status"] == "ok", by_name["clock"]
    assert body["ok"] is (body["counts"]["fail"] == 0)


async def test_clock_skew_is_measured_within_its_own_error_bound(bus: Bus, nats_url: str) -> None:
    nc = await doctor_bus.connect_once(nats_url, 2.0)
    try:
        skew = await doctor_bus.measure_skew(nc)
    finally:
        await nc.close()
    # The server runs on this machine's clock: what is measured is the method's own error alone.
    assert 0 < skew["rtt_s"] < 1.0
    assert abs(skew["skew_s"]) <= skew["error_s"] + 0.002, skew


def test_a_port_where_no_server_listens_fails_the_doctor_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    assert main(["doctor", "--json", "--skip-engines", "--nats-url", url]) == 1  # the exit status
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["nats"]["status"] == "fail" and "nothing accepts connections" in checks["nats"]["reason"]
    assert checks["clock"]["status"] == "warn" and "not measured" in checks["clock"]["reason"]


async def test_a_wrong_password_is_refused_and_the_right_one_logs_in(
    users_server: tuple[NatsServer, NatsUsers],
) -> None:
    server, users = users_server
    wrong = f"nats://{ADMIN}:wrong-password@127.0.0.1:{server.port}"
    refused, nc = await doctor_bus.check_nats(wrong, 2.0)
    assert nc is None and refused.status is Status.fail
    assert "refused the login" in refused.reason and "wrong-password" not in refused.reason
    right, nc = await doctor_bus.check_nats(users.url(ADMIN, "127.0.0.1", server.port), 2.0)
    assert nc is not None
    await nc.close()
    assert right.status is Status.ok, right.reason
    assert users.passwords[ADMIN] not in json.dumps(right.details)


async def test_the_engine_check_runs_the_tiny_llama_for_its_tokens() -> None:
    if engines.missing(engines.PROBES["llama_cpp"]):
        pytest.skip(f"llama.cpp is not installed: {engines.missing(engines.PROBES['llama_cpp'])}")
    check = await engines.check_engine("llama_cpp", "cpu", timeout_s=60)
    assert check.status is Status.ok, check.reason
    assert check.details["tokens"] == engines.TOKENS == check.details["completion_tokens"]
    assert check.details["finish_reason"] == "length" and check.details["text"]
    assert check.details["load_s"] > 0 and check.details["run_s"] > 0


async def test_an_engine_that_is_not_installed_is_a_warning() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    check = await engines.check_engine("vllm", "cpu", timeout_s=5)
    assert check.status is Status.warn and check.reason == "not installed (no vllm)"


def test_this_cpu_machine_is_said_to_have_no_gpu_as_a_warning() -> None:
    view = node.look()
    if view.samples:
        pytest.skip(f"this machine has a GPU ({view.samples[0].name})")
    check = node.check_gpus(view)
    assert check.status is Status.warn and check.reason.startswith("no GPU")
    assert "nvml" in check.details["why_not"]
