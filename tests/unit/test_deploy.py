"""The deployment files, read as Docker, Compose and Prometheus would read them (no Docker here):
every compose file parses, waits on health checks that exist, takes every secret from `.env` with
`${VAR:?}`; every Dockerfile is multi-stage, runs as a non-root user and checks its health; the
light images carry no engine; Prometheus scrapes services that exist and loads rules that parse."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "deploy" / "compose"
COMPOSE_FILES = [
    COMPOSE / "docker-compose.yml",
    COMPOSE / "docker-compose.node.yml",
    COMPOSE / "docker-compose.cluster.yml",
    ROOT / "jetson" / "docker-compose.yml",
]
DOCKERFILES = [*sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile")), ROOT / "jetson" / "Dockerfile"]
VARIABLE = re.compile(r"\$\{(\w+)(:?[-?])?([^}]*)\}")
SECRET = re.compile(r"PASSWORD|SECRET|API_KEY")
ENGINES = ("torch", "vllm", "llama-cpp-python", "diffusers", "sentence-transformers", "transformers")


def compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def dockerfile_of(path: Path, service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    return (path.parent / build["context"] / build["dockerfile"]).resolve()


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip()
    ]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_files_wait_on_real_health_checks_and_take_secrets_from_the_env(path: Path) -> None:
    services = compose(path)["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on a service that does not exist: {dependency}"
            if condition.get("condition") == "service_healthy":
                target = services[dependency]
                dockerfile = dockerfile_of(path, target)
                has_check = "healthcheck" in target or (
                    dockerfile is not None and any(i == "HEALTHCHECK" for i, _ in instructions(dockerfile))
                )
                assert has_check, f"{name} waits for {dependency} to be healthy, which has no health check"
        if (dockerfile := dockerfile_of(path, service)) is not None:
            assert dockerfile.exists(), f"{name}: {dockerfile}"
    for variable, operator, _ in VARIABLE.findall(path.read_text()):
        if SECRET.search(variable):
            assert operator == ":?", f"{path.name}: the secret {variable} must be required (${{{variable}:?...}})"
    if path == COMPOSE / "docker-compose.yml":
        documented = set(re.findall(r"^(\w+)=", (COMPOSE / ".env.example").read_text(), re.M))
        used = {v for v, _, _ in VARIABLE.findall(path.read_text())}
        assert used <= documented, f".env.example lacks {sorted(used - documented)}"
        gpu = services["worker-gpu"]
        assert gpu["profiles"] == ["gpu"] and gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == (
            "nvidia"
        )


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_are_multi_stage_non_root_and_check_their_health(path: Path) -> None:
    steps = instructions(path)
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) >= 2, f"{path.name}: one stage builds, another runs"
    final = steps[stages[-1] :]
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{path.name}: the final stage runs as root"
    assert any(op == "HEALTHCHECK" for op, _ in final), f"{path.name}: no HEALTHCHECK"
    assert any(op in ("CMD", "ENTRYPOINT") for op, _ in final)


@pytest.mark.parametrize("path", [*DOCKERFILES, *(ROOT / "deploy" / "docker" / "local").glob("*.Dockerfile")])
def test_dockerfiles_need_no_registry_for_their_frontend_and_fetch_through_the_build_ca(path: Path) -> None:
    """A `# syntax=` line makes BuildKit pull a frontend image; every download step (pip, npm, apt)
    runs through with-ca.sh with the `build-ca` secret, so a proxy's CA reaches it and no layer."""
    text = path.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M), f"{path.name}: a syntax line needs a registry"
    for op, arg in instructions(path):
        if op == "RUN" and re.search(r"\b(pip|npm) (install|wheel|ci)\b|apt-get install", arg):
            assert "id=build-ca" in arg and "with-ca" in arg, f"{path.name}: {arg[:80]}"


def test_the_light_images_carry_no_engine() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11+")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def requirements(extra: str) -> list[str]:
        out = []
        for requirement in extras[extra]:
            if requirement.startswith("modalmesh["):
                out += [r for e in requirement[len("modalmesh[") : -1].split(",") for r in requirements(e)]
            else:
                out.append(requirement)
        return out

    services = compose(COMPOSE / "docker-compose.yml")["services"]
    for name in ("gateway", "scheduler", "aggregator", "monitor"):
        args = services[name]["build"]["args"]
        assert args["SERVICE"] == name and services[name]["build"]["dockerfile"].endswith("service.Dockerfile")
        installed = [r for extra in args["EXTRAS"].split(",") for r in requirements(extra)]
        heavy = [r for r in installed if re.split(r"[<>=\[; ]", r)[0] in ENGINES]
        assert not heavy, f"the {name} image would install {heavy}"


def test_prometheus_scrapes_compose_services_and_its_rules_parse() -> None:
    config = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    services = compose(COMPOSE / "docker-compose.yml")["services"]
    for job in config["scrape_configs"]:
        for name in job["dns_sd_configs"][0]["names"]:
            assert name in services, f"{job['job_name']} scrapes {name}, not a compose service"
    rules = yaml.safe_load((COMPOSE / "prometheus" / "alerts.yml").read_text())
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    assert {"GpuTemperature", "VramPressure", "RamPressure", "NodeOffline", "WorkerCrashLoop"} <= set(names)
    assert all(
        r["expr"] and r["labels"]["severity"] in ("warning", "critical") for g in rules["groups"] for r in g["rules"]
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules_and_the_config(tmp_path: Path) -> None:
    rules = COMPOSE / "prometheus" / "alerts.yml"
    subprocess.run(["promtool", "check", "rules", str(rules)], check=True)
    config = (COMPOSE / "prometheus" / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(rules))
    (tmp_path / "prometheus.yml").write_text(config)
    subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], check=True)


def test_kubernetes_workloads_probe_run_as_non_root_and_take_secrets_from_the_secret() -> None:
    k8s = ROOT / "deploy" / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    images = {i["name"] for i in kustomization["images"]}
    workloads = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((k8s / resource).read_text()):
            if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
                workloads.append(doc)
    assert {w["metadata"]["name"] for w in workloads} >= {
        "gateway",
        "scheduler",
        "aggregator",
        "monitor",
        "worker-cpu",
        "worker-gpu",
    }
    for w in workloads:
        pod = w["spec"]["template"]
        assert pod["metadata"]["labels"] == w["spec"]["selector"]["matchLabels"], w["metadata"]["name"]
        for c in pod["spec"]["containers"]:
            where = f"{w['metadata']['name']}/{c['name']}"
            assert c["image"] in images, f"{where}: image {c['image']} is not in the kustomization"
            assert c["readinessProbe"] and c["livenessProbe"] and c["resources"]["requests"], where
            assert c["securityContext"]["runAsNonRoot"] is True, where
            for env in c["env"]:
                if SECRET.search(env["name"]):  # from the secret, or built of variables that are
                    assert "secretKeyRef" in env.get("valueFrom", {}) or "$(" in env.get("value", ""), (
                        f"{where}: {env['name']} is not from the secret"
                    )
    gpu = next(w for w in workloads if w["metadata"]["name"] == "worker-gpu")
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    example = yaml.safe_load((k8s / "secret.example.yaml").read_text())
    referenced = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for w in workloads
        for c in w["spec"]["template"]["spec"]["containers"]
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert referenced <= set(example["stringData"]), referenced - set(example["stringData"])
