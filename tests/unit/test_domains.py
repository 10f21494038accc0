"""Resource domains: the file, each kind of work's own domain, and a worker kept to its CPUs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.requests import Modality
from services.common.confinement import (
    CGROUP_ROOT,
    cgroup_memory_limit_mb,
    confined_command,
    held_mb,
    memory_limit_note,
    ram_mb,
)
from services.common.domains import Domains, DomainSpec, default_domain
from services.common.gpu_share import share_budget_mb
from services.workers.__main__ import host_memory_mb
from services.workers.engines.vllm import VllmConfig, engine_args
from services.workers.settings import WorkerSettings


def test_the_file_names_caps_and_shares(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text(
        "domains:\n  image: {max_concurrency: 1, max_queue: 10, cpus: [1], gpu_memory_fraction: 0.3}\n"
        "  speech: {ram_fraction: 0.1}\n"
    )
    domains = Domains.load(path)
    assert domains.spec("image") == DomainSpec(max_concurrency=1, max_queue=10, cpus=(1,), gpu_memory_fraction=0.3)
    assert domains.spec("speech") == DomainSpec(ram_fraction=0.1)
    assert domains.spec("llm") == DomainSpec()  # not named: no cap


def test_without_a_file_no_domain_has_a_cap() -> None:
    assert Domains.load(None).domains == {} and Domains.load(None).spec("image") == DomainSpec()


@pytest.mark.parametrize(
    "text",
    [
        "domains:\n  image: {max_concurency: 1}\n",
        "domains:\n  image: {cpus: []}\n",
        "domains:\n  image: {ram_fraction: 1.5}\n",
        "domains: [\n",
    ],
)
def test_a_bad_file_stops_the_service_naming_the_variable(tmp_path: Path, text: str) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match="MODALMESH_DOMAINS_FILE"):
        Domains.load(path)


def test_each_kind_of_work_has_its_own_domain_by_default() -> None:
    assert default_domain((Modality.chat, Modality.completion)) == "llm"
    assert default_domain((Modality.image,)) == "image" == default_domain((Modality.video,))
    assert default_domain((Modality.embedding,)) == "embedding"
    assert default_domain((Modality.speech,)) == "speech"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores to pin to one")
def test_confine_keeps_the_process_and_its_new_threads_to_the_domains_cpus_and_niceness() -> None:
    core = max(os.sched_getaffinity(0))
    code = (
        "import os, threading\n"
        "from services.common.confinement import confine\nfrom services.common.domains import DomainSpec\n"
        f"confine(DomainSpec(cpus=({core},), nice=7))\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append((os.sched_getaffinity(0), os.nice(0)))); t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), sorted(seen[0][0]), os.environ['OMP_NUM_THREADS'], seen[0][1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"[{core}]", f"[{core}]", "1", str(max(7, os.nice(0)))]


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or not hasattr(os, "SCHED_IDLE"),
    reason="needs two CPU cores to pin to one, and Linux's SCHED_IDLE",
)
def test_confine_also_holds_the_threads_already_running() -> None:
    """A worker's metrics server and trace exporter run before its domain is known: they are held too."""
    core = max(os.sched_getaffinity(0))
    code = (
        "import os, threading\n"
        "from services.common.confinement import confine\nfrom services.common.domains import DomainSpec\n"
        "go, seen = threading.Event(), []\n"
        "def early():\n"
        "    go.wait()\n"
        "    seen.append((sorted(os.sched_getaffinity(0)), os.getpriority(os.PRIO_PROCESS, 0),\n"
        "                 os.sched_getscheduler(0) == os.SCHED_IDLE))\n"
        "t = threading.Thread(target=early); t.start()\n"
        f"confine(DomainSpec(cpus=({core},), nice=7, sched_idle=True))\n"
        "go.set(); t.join()\n"
        "print(*seen[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"[{core}]", str(max(7, os.nice(0))), "True"]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_a_sched_idle_domain_runs_its_process_and_new_threads_at_the_idle_policy() -> None:
    code = (
        "import os, threading\n"
        "from services.common.confinement import confine\nfrom services.common.domains import DomainSpec\n"
        "confine(DomainSpec(sched_idle=True))\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0))); t.start(); t.join()\n"
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE, seen[0] == os.SCHED_IDLE)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the policy is the domain's, not the caller's


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores to show a confinement")
def test_control_plane_commands_run_on_the_control_planes_cpus(tmp_path: Path) -> None:
    """`make run` starts NATS and the control-plane services through this wrapper when the domains
    file names `control_plane`: the command it execs runs on those CPUs only."""
    path = tmp_path / "domains.yaml"
    path.write_text("control_plane: {cpus: [0]}\ndomains:\n  image: {cpus: [1], nice: 19}\n")
    probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)), os.nice(0))"]
    out = subprocess.run(
        [sys.executable, "-m", "services.common.confinement", str(path), "--", *probe],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["[0]", "0"]
    assert confined_command("nats-server -js", path).endswith(
        f"-m services.common.confinement {path} -- nats-server -js"
    )
    assert confined_command("nats-server -js", None) == "nats-server -js"  # no file: as it was


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is enforced on Linux")
def test_a_ram_share_holds_the_worker_and_what_it_starts_to_it() -> None:
    """Allocations within the share succeed; beyond it they fail, in the worker and in a server it
    starts; the process that confined nothing is not held."""
    code = (
        "import subprocess, sys\n"
        "from services.common.confinement import confine, memory_limit_note, private_mb, ram_mb\n"
        "from services.common.domains import DomainSpec\n"
        "confine(DomainSpec(ram_fraction=(private_mb() + 400) / ram_mb()))\n"
        "within = len(bytearray(200 * 2**20))\n"
        "try:\n"
        "    bytearray(800 * 2**20); beyond = 'allocated'\n"
        "except MemoryError:\n"
        "    beyond = 'MemoryError'\n"
        "child = subprocess.run([sys.executable, '-c', 'bytearray(800 * 2**20)'], capture_output=True).returncode\n"
        "print(within == 200 * 2**20, beyond, child != 0, 'memory limit of' in memory_limit_note())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "MemoryError", "True", "True"]
    assert len(bytearray(800 * 2**20)) and memory_limit_note() == ""  # the test process itself: no limit


def test_the_ram_a_control_group_allows_is_the_tightest_limit_on_it_and_above_it(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "fleet" / "worker").mkdir(parents=True)
    (v2 / "fleet" / "memory.max").write_text("1073741824\n")  # 1 GiB on the parent
    (v2 / "fleet" / "worker" / "memory.max").write_text("max\n")
    assert cgroup_memory_limit_mb("0::/fleet/worker\n", root=v2) == 1024
    (v2 / "fleet" / "worker" / "memory.max").write_text("536870912\n")
    assert cgroup_memory_limit_mb("0::/fleet/worker\n", root=v2) == 512
    # A container sees its own group as the mount's root; the path it is told need not exist there.
    (v2 / "memory.max").write_text("268435456\n")
    assert cgroup_memory_limit_mb("0::/system.slice/docker-1.scope\n", root=v2) == 256

    v1 = tmp_path / "v1"
    (v1 / "memory" / "docker" / "c1").mkdir(parents=True)
    (v1 / "memory" / "docker" / "c1" / "memory.limit_in_bytes").write_text("2147483648\n")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's 'unlimited'
    membership = "5:cpu,cpuacct:/docker/c1\n4:memory:/docker/c1\n0::/\n"
    assert cgroup_memory_limit_mb(membership, root=v1) == 2048
    assert cgroup_memory_limit_mb("4:memory:/other\n", root=v1) is None
    assert cgroup_memory_limit_mb("1:cpu:/\n", root=v1) is None  # no memory controller at all


def _memory_cgroup_we_may_write() -> Path | None:
    """This process's cgroup v1 memory group, where we may make groups inside it (as root)."""
    try:
        line = next(
            line
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if "memory" in line.split(":")[1].split(",")
        )
    except (OSError, StopIteration):
        return None
    group = CGROUP_ROOT / "memory" / line.split(":", 2)[2].lstrip("/")
    return group if (group / "memory.limit_in_bytes").exists() and os.access(group, os.W_OK) else None


@pytest.mark.skipif(
    _memory_cgroup_we_may_write() is None,
    reason="needs a cgroup v1 memory hierarchy this user may write (root, not in a container)",
)
def test_a_worker_in_a_memory_limited_control_group_plans_within_that_limit() -> None:
    """The kernel's own limit, as a container's would be: ram_mb() and a domain's RAM share follow it."""
    parent = _memory_cgroup_we_may_write()
    assert parent is not None
    group = parent / f"modalmesh-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(512 * 2**20))
        code = (
            "from services.common.confinement import held_mb, ram_mb\n"
            "from services.common.domains import DomainSpec\n"
            "from services.common.gpu_share import share_budget_mb\n"
            "print(round(ram_mb()), round(share_budget_mb(DomainSpec(ram_fraction=0.5), 'cpu') + held_mb()))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        ).stdout
        assert out.split() == ["512", "256"]
        assert ram_mb() > 512  # the test process, outside the group: the machine's RAM
    finally:
        group.rmdir()


def test_a_host_worker_fills_its_domains_ram_share_less_what_it_holds() -> None:
    budget = share_budget_mb(DomainSpec(ram_fraction=0.25), "cpu")
    assert budget is not None and budget == pytest.approx(0.25 * ram_mb() - held_mb(), abs=64)
    assert share_budget_mb(DomainSpec(gpu_memory_fraction=0.3), "cpu") is None  # a GPU share says nothing of RAM
    assert share_budget_mb(DomainSpec(ram_fraction=0.25), "cuda:0") is None  # nor a RAM share of a GPU
    share = DomainSpec(ram_fraction=0.25)
    assert host_memory_mb(WorkerSettings(engine="host"), share) == pytest.approx(budget, abs=64)
    assert host_memory_mb(WorkerSettings(engine="host", memory_mb=100), share) == 100  # less: as asked
    assert host_memory_mb(WorkerSettings(engine="host", memory_mb=10 * ram_mb()), share) == pytest.approx(
        budget, abs=64
    )  # more than the share leaves: held to it
    assert host_memory_mb(WorkerSettings(engine="host", memory_mb=100), DomainSpec()) == 100
    with pytest.raises(SystemExit, match="MEMORY_MB"):
        host_memory_mb(WorkerSettings(engine="host"), DomainSpec())


def test_vllm_takes_its_domains_gpu_share_unless_the_worker_names_one() -> None:
    config = VllmConfig("m", "/models/m")
    assert engine_args(config)["gpu_memory_utilization"] == 0.9  # no share: vLLM's usual
    assert engine_args(config, 0.3)["gpu_memory_utilization"] == 0.3
    assert engine_args(VllmConfig("m", "/models/m", gpu_memory_utilization=0.5), 0.3)["gpu_memory_utilization"] == 0.5
    told = engine_args(VllmConfig("m", "/models/m", engine_args={"gpu_memory_utilization": 0.6, "dtype": "half"}), 0.3)
    assert told["gpu_memory_utilization"] == 0.6 and told["dtype"] == "half"
