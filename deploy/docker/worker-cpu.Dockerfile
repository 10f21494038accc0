# A CPU worker for the llama.cpp engine (the tiny model it writes itself, or MODALMESH_WORKER_MODEL_PATH)
# and the OpenAI-compatible upstream engine (httpx), without torch; and, as target `llama-server`, the project's own llama.cpp server image
# (`python -m llama_cpp.server`), which the Docker-managed upstream engine runs. Both take
# llama-cpp-python from one wheel, compiled once in the `llama-wheel` stage and reused from the build
# cache afterwards. Base and CA bundle as in service.Dockerfile.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS llama-wheel
ARG LLAMA_CPP_PYTHON=0.3.36
COPY deploy/docker/with-ca.sh /usr/local/bin/with-ca
RUN --mount=type=secret,id=build-ca with-ca sh -c 'apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake' && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 CMAKE_BUILD_PARALLEL_LEVEL=4
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/pip \
    python -m venv /tmp/v && with-ca /tmp/v/bin/pip wheel --no-deps -w /wheels "llama-cpp-python==${LLAMA_CPP_PYTHON}"

FROM ${PYTHON_IMAGE} AS build
COPY deploy/docker/with-ca.sh /usr/local/bin/with-ca
COPY --from=llama-wheel /wheels /wheels
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/wheels
WORKDIR /src
COPY pyproject.toml README.md ./
RUN mkdir contracts services && touch contracts/__init__.py services/__init__.py
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/pip \
    with-ca pip install ".[llama,otlp]" "httpx>=0.27" && pip uninstall -y modalmesh \
    && rm -rf build modalmesh.egg-info contracts services
COPY contracts contracts
COPY services services
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/pip with-ca pip install --no-deps . \
    && pip uninstall -y -q pip setuptools && rm -rf /opt/venv/lib/python*/site-packages/numpy/*/tests

FROM ${PYTHON_IMAGE} AS runtime
RUN --mount=type=secret,id=build-ca --mount=type=bind,source=deploy/docker/with-ca.sh,target=/usr/local/bin/with-ca \
    with-ca sh -c 'apt-get update && apt-get install -y --no-install-recommends libgomp1' \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 --create-home modalmesh
ENV PYTHONUNBUFFERED=1

FROM runtime AS llama-server-build
COPY --from=llama-wheel /wheels /wheels
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=deploy/docker/with-ca.sh,target=/usr/local/bin/with-ca \
    python -m venv /opt/venv && with-ca /opt/venv/bin/pip install --find-links /wheels "$(ls /wheels/*.whl)[server]"

FROM runtime AS llama-server
COPY --from=llama-server-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER modalmesh
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v1/models', timeout=2)"]
ENTRYPOINT ["python", "-m", "llama_cpp.server"]
CMD ["--host", "0.0.0.0", "--port", "8080"]

FROM runtime AS worker
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH MODALMESH_METRICS_PORT=9100 MODALMESH_HEALTH_URL=http://127.0.0.1:9100/metrics
USER modalmesh
WORKDIR /home/modalmesh
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 CMD ["python", "-m", "services.healthcheck"]
# A worker's id must be stable across restarts (it resumes its assignments) and unique among
# replicas (`--scale`): the container's hostname is both, unless the id is set.
CMD ["sh", "-c", "MODALMESH_WORKER_WORKER_ID=${MODALMESH_WORKER_WORKER_ID:-cpu-$(hostname)} exec python -m services.workers"]
