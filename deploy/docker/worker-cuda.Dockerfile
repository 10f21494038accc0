# A GPU worker: vLLM (which brings its own CUDA torch), llama.cpp built with CUDA, diffusers. Runs
# with the GPU reserved by compose (deploy.resources.reservations.devices) or `--gpus all`.
ARG CUDA=12.4.1

FROM nvidia/cuda:${CUDA}-devel-ubuntu22.04 AS build
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=deploy/docker/with-ca.sh,target=/usr/local/bin/with-ca \
    with-ca sh -c 'apt-get update && apt-get install -y --no-install-recommends python3.10 python3.10-venv python3-pip \
    build-essential cmake git' \
    && rm -rf /var/lib/apt/lists/*
RUN python3.10 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 CMAKE_ARGS="-DGGML_CUDA=on"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY services services
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=deploy/docker/with-ca.sh,target=/usr/local/bin/with-ca \
    with-ca pip install ".[vllm,llama,embeddings,diffusion,weights,otlp]"

FROM nvidia/cuda:${CUDA}-runtime-ubuntu22.04
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=deploy/docker/with-ca.sh,target=/usr/local/bin/with-ca \
    with-ca sh -c 'apt-get update && apt-get install -y --no-install-recommends python3.10 libgomp1' \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MODALMESH_WORKER_DEVICE=cuda MODALMESH_WORKER_N_GPU_LAYERS=-1 \
    MODALMESH_METRICS_PORT=9100 MODALMESH_HEALTH_URL=http://127.0.0.1:9100/metrics
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --create-home modalmesh
USER modalmesh
WORKDIR /home/modalmesh
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 CMD ["python", "-m", "services.healthcheck"]
CMD ["python", "-m", "services.workers"]
