# syntax=docker/dockerfile:1.7
# The light service images: gateway, scheduler, aggregator and monitor, each with only its own extra
# (no torch, no engines). One file, four images: `--build-arg SERVICE=<role> --build-arg EXTRAS=<extras>`
# (docker-compose.yml builds each).
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
ARG EXTRAS=gateway
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY services services
RUN pip install ".[${EXTRAS}]"

FROM python:${PYTHON}-slim
ARG SERVICE=gateway
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MODALMESH_SERVICE=${SERVICE} \
    MODALMESH_METRICS_PORT=9100 MODALMESH_HEALTH_URL=http://127.0.0.1:9100/metrics
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --create-home modalmesh
USER modalmesh
WORKDIR /home/modalmesh
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-m", "services.healthcheck"]
CMD ["sh", "-c", "exec python -m services.${MODALMESH_SERVICE}"]
