# The light service images: gateway, scheduler, aggregator and monitor, each with only its own extra
# (no torch, no engines). One file, four images: `--build-arg SERVICE=<role> --build-arg EXTRAS=<extras>`
# (docker-compose.yml builds each). The base is the public python image unless PYTHON_IMAGE names
# another (`make test-compose` passes a local stand-in); an extra CA bundle for pip comes as the build
# secret `build-ca` (see with-ca.sh). The console is built from console/ (npm ci with its lockfile, then
# vite) in a Node stage, NODE_IMAGE, so the image carries it whether or not the host has Node.
ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:20-slim

FROM ${NODE_IMAGE} AS console
COPY deploy/docker/with-ca.sh /usr/local/bin/with-ca
WORKDIR /console
COPY console/package.json console/package-lock.json ./
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.npm \
    with-ca npm ci --no-audit --no-fund --loglevel=error
COPY console ./
RUN npm run build -- --outDir /console/dist

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=gateway
COPY deploy/docker/with-ca.sh /usr/local/bin/with-ca
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies from pyproject.toml alone, so that a change of the sources reuses this layer.
COPY pyproject.toml README.md ./
RUN mkdir contracts services && touch contracts/__init__.py services/__init__.py
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/pip \
    with-ca pip install ".[${EXTRAS}]" && pip uninstall -y modalmesh \
    && rm -rf build modalmesh.egg-info contracts services
COPY contracts contracts
COPY services services
COPY --from=console /console/dist services/gateway/console_dist
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/pip with-ca pip install --no-deps . \
    && pip uninstall -y -q pip setuptools && rm -rf /opt/venv/lib/python*/site-packages/numpy/*/tests

FROM ${PYTHON_IMAGE}
ARG SERVICE=gateway
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MODALMESH_SERVICE=${SERVICE} \
    MODALMESH_METRICS_PORT=9100 MODALMESH_HEALTH_URL=http://127.0.0.1:9100/metrics
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --create-home modalmesh
USER modalmesh
WORKDIR /home/modalmesh
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-m", "services.healthcheck"]
CMD ["sh", "-c", "exec python -m services.${MODALMESH_SERVICE}"]
