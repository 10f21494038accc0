# ModalMesh: `make run` starts the whole stack on this machine, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python compiles llama.cpp once (cached by pip afterwards): use every core for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run console bench-console test test-fast test-gpu gpu-proof bench bench-policies bench-isolation scenario-preemption chaos bench-peers lint format clean install install-test browser prometheus test-compose compose-env

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[cpu]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## console: build the console (npm ci, then vite) into the gateway's package, when missing or older than
## its sources
CONSOLE_BUILT := services/gateway/console_dist/index.html
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html console/vite.config.js \
  console/package.json console/package-lock.json
console: $(CONSOLE_BUILT)

$(CONSOLE_BUILT): $(CONSOLE_SOURCES)
	@command -v npm >/dev/null || { echo "the console needs Node.js 20+ and npm to build (apt-get install nodejs npm)"; exit 1; }
	cd console && npm ci --no-audit --no-fund --loglevel=error && npm run build

## run: start NATS and every service on this machine (tiny CPU model), print the URL
run: install console
	$(PY) -m services.run

# The browser test drives Debian's Chromium; install it where we may (root with apt), else it skips.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: no Chromium; the browser test will be skipped (apt-get install chromium)"; }

# A real Prometheus (and promtool) for the metrics tests, likewise: Debian's package where we may.
prometheus:
	@command -v prometheus >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   prometheus >/dev/null) || echo "note: no prometheus; its tests will be skipped (apt-get install prometheus)"; }

## test: install what the tests need, lint, then run unit, integration, end-to-end and browser tests
test: install-test lint browser prometheus console
	cd console && npm test --silent
	$(PY) -m pytest -q

test-fast: install-test
	$(PY) -m pytest -q tests/unit

## test-compose: build the images, bring the fleet up in Docker, check it, tear it down (tests/compose/run.sh:
## it installs and starts a Docker engine where it may, root with apt, and skips saying why where it cannot)
test-compose: install-test
	PY=$(PY) bash tests/compose/run.sh

## compose-env: deploy/compose/.env with random secrets (owner-only); never over an existing one
compose-env:
	@$(PYTHON) -m services.compose_env

## test-gpu: on a CUDA machine, install vLLM (it brings its own torch) and run the GPU tests: vLLM in
## process on the tiny Hugging Face LLaMA, diffusers on CUDA
test-gpu: install-test
	$(PIP) install --quiet -e '.[vllm]'
	$(PY) -m pytest -q -rs tests/gpu

## gpu-proof: the wheels the GPU machine lacks (.data/gpu-proof, at most 60 MiB, checked), for
## deploy/gpu-proof/run.sh to run there: the doctor, tests/gpu, NVML against nvidia-smi, the overhead bench
gpu-proof: install-test
	$(PY) deploy/gpu-proof/prepare.py

## bench: control-plane overhead and streaming throughput -> .data/bench/overhead.json, then media
## (embeddings through the gateway vs direct, image time to first progress) -> .data/bench/media.json, then
## an OpenAI-compatible server through the upstream engine vs called directly -> .data/bench/upstream.json,
## then per-key limits' cost and key propagation between gateways -> .data/bench/keys.json
bench: install-test
	$(PY) -m bench.overhead
	$(PY) -m bench.media
	$(PY) -m bench.upstream
	$(PY) -m bench.keys

## bench-policies: the four scheduling policies on a SIMULATED fleet -> .data/bench/policies.{json,png}
bench-policies: install-test
	$(PY) -m bench.policies

## bench-isolation: realtime chat TTFT while image jobs fill their domain, domains on and off -> .data/bench/isolation.json
bench-isolation: install-test
	$(PY) -m bench.isolation

## scenario-preemption: a priority-9 model arrives on a full host held by a priority-3 one mid-answer;
## the models' states as they change -> .data/bench/preemption.{json,png}
scenario-preemption: install-test
	$(PY) -m bench.preemption

## bench-console: the console's first load, heartbeat-to-chart latency in Chromium, and chat TTFT with 0 and
## 50 open consoles in turns -> .data/bench/console.json
bench-console: install-test console browser
	$(PY) -m bench.console

## chaos: SIGKILL workers, scheduler, aggregator and NATS under load -> .data/bench/chaos.json
chaos: install-test
	$(PY) -m bench.chaos

# LiteLLM in a virtual environment of its own (its pins are not ours); pip honours PIP_CERT / the CA bundle env.
LITELLM_VENV ?= .data/venvs/litellm
$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet 'litellm[proxy]'

## bench-peers: one llama_cpp.server direct, through ModalMesh and through the LiteLLM proxy, in turns by
## modalmesh-load: TTFT overhead over direct (p50, p99) and requests/s -> .data/bench/peers.{json,png}
bench-peers: install-test $(LITELLM_VENV)/bin/litellm
	$(PY) -m loadgen.peers --litellm $(LITELLM_VENV)/bin/litellm

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
