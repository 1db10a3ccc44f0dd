#!/usr/bin/env bash
# Runs the scheduler's load scenarios side by side, in one run, on this
# machine, and prints tei-sidecar bench's tables:
#
#   1. ingest + queries and concurrent misses: the sidecar (its defaults:
#      priorities and the adaptive limit) against the same simulator
#      straight;
#   2. flood: the sidecar with the adaptive limit against a second sidecar
#      with the static limit (ADAPTIVE_CONCURRENCY=false), over the same
#      simulator.
#
# The simulator (tests/teisim, not TEI) has one backend worker and a
# realistic cost: 5 ms a batch plus 200 µs a token (SIM_BATCH_COST,
# SIM_TOKEN_COST change it), so TEI, not the machine, is the bound. It is a
# benchmark, not a test: run it on an idle machine.
#
#   bash bench/scenarios.sh            # SCENARIO_DURATION=10s for longer runs
#
# Everything listens on loopback, and every process it started is stopped
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

batch_cost=${SIM_BATCH_COST:-5ms}
token_cost=${SIM_TOKEN_COST:-200us}
duration=${SCENARIO_DURATION:-5s}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "scenarios: building tei-sidecar and the simulator" >&2
go build -o "$work/tei-sidecar" ./cmd/tei-sidecar
go build -o "$work/teisim" ./tests/teisim/cmd/teisim

# free_port prints a loopback port nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http waits until URL answers 200.
wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "scenarios: $1 did not come up; logs in $work" >&2
  trap - EXIT
  exit 1
}

sim_port=$(free_port)
"$work/teisim" --model-id BAAI/bge-m3 --hostname 127.0.0.1 --port "$sim_port" \
  --max-client-batch-size 32 --sim-workers 1 \
  --sim-batch-cost "$batch_cost" --sim-token-cost "$token_cost" >"$work/teisim.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sim_port/health"

# sidecar NAME PORT [ENV=VALUE...]: starts a sidecar on PORT in front of
# the simulator, with an environment of PATH and HOME alone (no .env, none
# of the caller's settings) plus the given ones.
sidecar() {
  local name=$1 port=$2
  shift 2
  (cd "$work" && exec env -i PATH="$PATH" HOME="$HOME" "$@" ./tei-sidecar serve --launch none \
    --tei-embed-url "http://127.0.0.1:$sim_port" --rerank-enable=false \
    --listen "127.0.0.1:$port") >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/ready"
}

adaptive=$(free_port)
sidecar adaptive "$adaptive"
static=$(free_port)
sidecar static "$static" ADAPTIVE_CONCURRENCY=false

echo "scenarios: simulator 127.0.0.1:$sim_port (1 worker, $batch_cost a batch + $token_cost a token); sidecars 127.0.0.1:$adaptive (adaptive limit), 127.0.0.1:$static (static limit)" >&2

echo "== The sidecar (defaults) against the simulator straight"
"$work/tei-sidecar" bench --target "http://127.0.0.1:$adaptive" --baseline "http://127.0.0.1:$sim_port" \
  --baseline-face tei --no-rerank --scenario ingest,misses --scenario-duration "$duration"

echo
echo "== Flood: the adaptive limit (target) against the static limit (baseline)"
"$work/tei-sidecar" bench --target "http://127.0.0.1:$adaptive" --baseline "http://127.0.0.1:$static" \
  --no-rerank --scenario flood --scenario-duration "$duration"
