"""Resource domains: the file, each kind of work's own domain, and a worker kept to its CPUs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.requests import Modality
from services.common.domains import Domains, DomainSpec, confined_command, default_domain


def test_the_file_names_caps_and_shares(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text("domains:\n  image: {max_concurrency: 1, max_queue: 10, cpus: [1], gpu_memory_fraction: 0.3}\n")
    domains = Domains.load(path)
    assert domains.spec("image") == DomainSpec(max_concurrency=1, max_queue=10, cpus=(1,), gpu_memory_fraction=0.3)
    assert domains.spec("llm") == DomainSpec()  # not named: no cap


def test_without_a_file_no_domain_has_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODALMESH_DOMAINS_FILE", raising=False)
    assert Domains.load().domains == {} and Domains.load().spec("image") == DomainSpec()


@pytest.mark.parametrize("text", ["domains:\n  image: {max_concurency: 1}\n", "domains:\n  image: {cpus: []}\n",
                                  "domains: [\n"])
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
        "from services.common.domains import DomainSpec, confine\n"
        f"confine(DomainSpec(cpus=({core},), nice=7))\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append((os.sched_getaffinity(0), os.nice(0)))); t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), sorted(seen[0][0]), os.environ['OMP_NUM_THREADS'], seen[0][1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"[{core}]", f"[{core}]", "1", str(max(7, os.nice(0)))]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_a_sched_idle_domain_runs_its_process_and_new_threads_at_the_idle_policy() -> None:
    code = (
        "import os, threading\n"
        "from services.common.domains import DomainSpec, confine\n"
        "confine(DomainSpec(sched_idle=True))\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0))); t.start(); t.join()\n"
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE, seen[0] == os.SCHED_IDLE)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the policy is the domain's, not the caller's


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores to show a confinement")
def test_control_plane_commands_run_on_the_control_planes_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` starts NATS and the control-plane services through this wrapper when the domains
    file names `control_plane`: the command it execs runs on those CPUs only."""
    path = tmp_path / "domains.yaml"
    path.write_text("control_plane: {cpus: [0]}\ndomains:\n  image: {cpus: [1], nice: 19}\n")
    env = {**os.environ, "MODALMESH_DOMAINS_FILE": str(path)}
    probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)), os.nice(0))"]
    out = subprocess.run([sys.executable, "-m", "services.common.domains", "--", *probe], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[0]", "0"]
    monkeypatch.setenv("MODALMESH_DOMAINS_FILE", str(path))
    assert confined_command("nats-server -js").endswith("-m services.common.domains -- nats-server -js")
    monkeypatch.delenv("MODALMESH_DOMAINS_FILE")
    assert confined_command("nats-server -js") == "nats-server -js"  # no file: as it was
