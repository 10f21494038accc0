# syntax=docker/dockerfile:1.7
# A CPU worker: llama.cpp, embeddings, diffusers and TTS on the CPU build of torch. The engine is
# chosen at run time (MODALMESH_WORKER_ENGINE); models come from a mounted path or the fleet.
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY services services
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
    ".[llama,embeddings,diffusion,tts,weights,otlp]" "torch==2.13.0"

FROM python:${PYTHON}-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    MODALMESH_METRICS_PORT=9100 MODALMESH_HEALTH_URL=http://127.0.0.1:9100/metrics
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --create-home modalmesh
USER modalmesh
WORKDIR /home/modalmesh
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 CMD ["python", "-m", "services.healthcheck"]
CMD ["python", "-m", "services.workers"]
