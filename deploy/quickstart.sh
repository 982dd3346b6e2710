#!/usr/bin/env bash
# The main job on one machine: builds tofuflow, starts a coordinator on SQLite and two agents
# against the local RabbitMQ, drives examples/gpu-pool through plan → approve → apply → outputs,
# shows the run, and stops everything cleanly.
#
# Environment: TOFU=/path/to/tofu (default: `tofu` on PATH, else the stand-in), QUICKSTART_DIR
# (default .quickstart), TOFUFLOW_AMQP_URL (default the local broker's / vhost),
# QUICKSTART_GRPC_PORT / QUICKSTART_HTTP_PORT (default 7700 / 7701).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

dir="${QUICKSTART_DIR:-.quickstart}"
grpc_port="${QUICKSTART_GRPC_PORT:-7700}"
http_port="${QUICKSTART_HTTP_PORT:-7701}"
amqp="${TOFUFLOW_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
bin=target/debug
pids=()

stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "checking RabbitMQ"
ensure_rabbitmq

step "building (cargo build --workspace --bins)"
cargo build --workspace --bins --quiet

if [ -n "${TOFU:-}" ]; then
  tofu="$TOFU"
elif command -v tofu >/dev/null 2>&1; then
  tofu="$(command -v tofu)"
else
  tofu="$PWD/$bin/tofu-double"
  echo "no OpenTofu on PATH: using the stand-in tests/tofu-double (set TOFU=/path/to/tofu for a real one)"
fi
echo "tofu: $tofu ($("$tofu" version -json | sed -n 's/.*"terraform_version": *"\([^"]*\)".*/\1/p'))"

for port in "$grpc_port" "$http_port"; do
  if port_open 127.0.0.1 "$port"; then
    echo "error: port $port is in use (another coordinator?): stop it or set QUICKSTART_GRPC_PORT/QUICKSTART_HTTP_PORT" >&2
    exit 1
  fi
done

rm -rf "$dir" && mkdir -p "$dir"
export TOFUFLOW_COORDINATOR="http://127.0.0.1:$grpc_port"
export TOFUFLOW_USER="${TOFUFLOW_USER:-${USER:-quickstart}}"

step "starting the coordinator (SQLite at $dir/coordinator.db, gRPC :$grpc_port, HTTP :$http_port)"
"$bin/tofuflow-coordinator" --grpc-listen "127.0.0.1:$grpc_port" --http-listen "127.0.0.1:$http_port" \
  --database-url "sqlite://$dir/coordinator.db" --amqp-url "$amqp" --ready-file "$dir/coordinator.ready" \
  >"$dir/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -f "$dir/coordinator.ready" ] && break; sleep 0.1; done
[ -f "$dir/coordinator.ready" ] || { echo "error: the coordinator did not start; see $dir/coordinator.log" >&2; tail -5 "$dir/coordinator.log" >&2; exit 1; }

step "logging in with the bootstrap admin token the first start printed (kept in $dir/cli-config.toml, mode 0600)"
export TOFUFLOW_CONFIG_FILE="$dir/cli-config.toml"
boot="$(sed -n "s/^tofuflow: bootstrap admin token (shown once; save it with 'tofuflow login'): //p" "$dir/coordinator.log" | head -1)"
[ -n "$boot" ] || { echo "error: the coordinator printed no bootstrap token; see $dir/coordinator.log" >&2; exit 1; }
"$bin/tofuflow" login --token "$boot"
ui="$(sed -n 's/.*web UI at \([^ ]*\).*/\1/p' "$dir/coordinator.log" | head -1)"
echo "web UI at ${ui:-http://127.0.0.1:$http_port/ui/} (while this script runs; log in with the bootstrap admin token in $dir/coordinator.log)"

step "creating a join token for pool 'default' (tofuflow agent join-token create --pool default)"
join="$("$bin/tofuflow" agent join-token create --pool default --ttl 1h | tail -1)"

step "starting two agents for pool 'default'"
for i in 1 2; do
  TOFUFLOW_AGENT_TOKEN="$join" "$bin/tofuflow-agent" --coordinator "$TOFUFLOW_COORDINATOR" --amqp-url "$amqp" --pool default \
    --tofu-bin "$tofu" --work-root "$dir/agent-$i" --name "quickstart-agent-$i" --ready-file "$dir/agent-$i.ready" \
    >"$dir/agent-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do
  for _ in $(seq 1 200); do [ -f "$dir/agent-$i.ready" ] && break; sleep 0.1; done
  [ -f "$dir/agent-$i.ready" ] || { echo "error: agent $i did not start; see $dir/agent-$i.log" >&2; tail -5 "$dir/agent-$i.log" >&2; exit 1; }
done
"$bin/tofuflow" agent list

step "tofuflow run submit examples/gpu-pool -w quickstart/gpu-a100 --var gpu_count=2 --wait"
"$bin/tofuflow" run submit examples/gpu-pool -w quickstart/gpu-a100 --var gpu_count=2 --var gpu_type=a100 \
  --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" --wait -o json >"$dir/submitted.json"
run_id="$(sed -n 's/^  "id": "\(.*\)",$/\1/p' "$dir/submitted.json" | head -1)"
state="$(sed -n 's/^  "state": "\(.*\)",$/\1/p' "$dir/submitted.json" | head -1)"
echo "run $run_id is $state"
[ "$state" = awaiting_approval ] || { echo "error: expected the plan to wait for approval" >&2; exit 1; }

step "the plan (tofuflow run logs $run_id)"
"$bin/tofuflow" run logs "$run_id" | sed -n '/── plan/,$p' | grep -E 'Plan to|Plan:|plan saved' || true

step "tofuflow run approve $run_id --wait"
"$bin/tofuflow" run approve "$run_id" --reason "quickstart" --wait >/dev/null

step "tofuflow run show $run_id"
"$bin/tofuflow" run show "$run_id"

step "stopping agents and coordinator"
stop_all
echo "done: logs and the database are in $dir/"
