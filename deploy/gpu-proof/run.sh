#!/usr/bin/env bash
# The GPU proof, run ON the GPU machine from the repository's root, after `make gpu-proof` here put
# the wheels it lacks in .data/gpu-proof (carry that folder). Within 8 minutes it runs: the doctor;
# the gpu tests (tests/gpu: diffusers image and video on CUDA in fp16, the GPU memory share; vLLM's
# skip where vLLM is absent); the monitor's NVML source against nvidia-smi; the control-plane
# overhead bench with the simulated engine. Results go to $OUT (default .data/gpu-proof/out):
#   run.log  doctor.json  doctor.txt  gpu-tests.xml  nvml_vs_smi.json  sim_overhead.json  summary.json
# Each step has its own timeout; together at most about 7 minutes (a few, as rehearsed on CPU).
set -uo pipefail
cd "$(dirname "$0")/../.."
PROOF=.data/gpu-proof
OUT=${OUT:-$PROOF/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
export MODALMESH_CACHE=${MODALMESH_CACHE:-/tmp/modalmesh-cache}  # the tiny models, written once for every step
declare -A rc

step() { echo; echo "== $1 ($(date -u +%T))"; }

step "python and the GPU"
PYTHON=${PYTHON:-python3}
"$PYTHON" --version
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if [ -n "${PROOF_PYTHON:-}" ]; then  # a rehearsal where everything is installed: PROOF_PYTHON=.venv/bin/python
    PY=$PROOF_PYTHON
else
    step "a venv over the system's packages, with the carried wheels, offline"
    "$PYTHON" -m venv --without-pip --system-site-packages /tmp/modalmesh-venv
    PY=/tmp/modalmesh-venv/bin/python
    # python3 there is itself a venv (/opt/torch/.venv): a venv made from it sees the base interpreter's
    # packages, not its own, so its site-packages (torch, pip ...) are named too, after the new venv's.
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' \
        >"$("$PY" -c 'import site; print(site.getsitepackages()[0])')/modalmesh-parent.pth"
    if ! "$PY" -m pip install -q --no-index --find-links "$PROOF/wheels" -r "$PROOF/requirements.txt"; then
        # A requirement the image meets in another version than asked: install what was carried as is,
        # and let the steps below show whether it works.
        echo "pip could not resolve with the image's packages; installing the carried wheels without their deps"
        "$PY" -m pip install -q --no-index --no-deps "$PROOF"/wheels/*.whl
    fi
fi
"$PY" -m pip list 2>/dev/null | grep -iE '^(torch|diffusers|transformers|nvidia-ml-py|pydantic|nats-py) '

step "a nats-server for the doctor, with the fleet's streams"
NATS_BIN=$("$PY" -c 'from services.run import nats_server_binary; print(nats_server_binary())')
NATS_PORT=14222
"$NATS_BIN" -js -sd /tmp/modalmesh-js -a 127.0.0.1 -p "$NATS_PORT" -l /tmp/modalmesh-nats.log &
NATS_PID=$!
trap 'kill $NATS_PID 2>/dev/null' EXIT
export MODALMESH_NATS_URL=nats://127.0.0.1:$NATS_PORT
timeout 20 "$PY" -c 'import asyncio, os
from services.common.bus import connect
async def main():
    bus = await connect(os.environ["MODALMESH_NATS_URL"], "gpu-proof")
    await bus.close()
asyncio.run(main())' && echo "bootstrapped $MODALMESH_NATS_URL"

step "modalmesh doctor (every engine, on the best device)"
timeout 150 "$PY" -m services.doctor --json --timeout 60 >"$OUT/doctor.json"
rc[doctor]=$?
"$PY" -c 'import json, sys
from services.doctor.report import Report, table
body = json.load(open(sys.argv[1]))
print(table(Report(node=body["node"], checks=body["checks"])))' "$OUT/doctor.json" | tee "$OUT/doctor.txt"

step "gpu tests"
timeout 150 "$PY" -m pytest -q -rs -p no:cacheprovider tests/gpu --junitxml="$OUT/gpu-tests.xml"
rc[gpu_tests]=$?

step "NVML against nvidia-smi"
timeout 30 "$PY" -m services.doctor.smi --out "$OUT/nvml_vs_smi.json"
rc[nvml_vs_smi]=$?

step "control-plane overhead, simulated engine"
LABEL="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(nproc) cores"
timeout 90 "$PY" -m bench.sim_overhead --runs 300 --concurrency 8,32 --label "$LABEL" --out "$OUT/sim_overhead.json"
rc[sim_overhead]=$?

step "summary"
{
    printf '{"machine": "%s", "finished": "%s"' "$LABEL" "$(date -u +%FT%TZ)"
    for name in "${!rc[@]}"; do printf ', "%s": %s' "$name" "${rc[$name]}"; done
    printf '}\n'
} | tee "$OUT/summary.json"
for code in "${rc[@]}"; do [ "$code" = 0 ] || exit 1; done
