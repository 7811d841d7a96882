#!/usr/bin/env bash
# Benchmark: MQ-RPC against direct RPC, same release build, same run, same service process.
#
#   bash Benchmarks/rpc.sh [SECONDS] [CALLERS] [WORKERS]
#
# Three processes, as deployed: a broker (`mq` module), a service node (`rpc` module serving `calc` from the broker's
# MQ `Calc` with WORKERS consumer connections, and on its own direct RPC port), and zbus-rpc-bench, which runs CALLERS
# concurrent callers (one call in flight each) of `calc.plus` for SECONDS, first over MQ-RPC, then over direct RPC.
# The broker also hosts `calc` itself (its own `rpc` module, MQ `CalcLocal`, WORKERS workers on the node's event
# loops), measured as `mq-local`: MQ-RPC with the service in the broker's process. Prints calls/s and p50/p99 latency
# of each, and the ratios against direct RPC. The aims: MQ-RPC >= 25,000 calls/s and >= 0.5x direct RPC.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
SECONDS_PER_RUN=${1:-5}
CALLERS=${2:-16}
WORKERS=${3:-16}
SCRATCH=${SCRATCH:-.build-rpc}
WORK=$(mktemp -d /tmp/zbus-bench-rpc.XXXXXX)
SERVICE_PID=
cleanup() {
    [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
    stop_zbus
    rm -rf "$WORK"
}
trap cleanup EXIT

build_release zbus zbus-rpc-bench
BENCH=$BIN/zbus-rpc-bench

# The broker: the mq module, and the rpc module serving calc from its own MQ CalcLocal.
mkdir -p "$WORK/broker"
cat > "$WORK/broker/node.yaml" <<EOF
node:
  log_level: warning
modules:
  - module: mq
  - module: rpc
    services:
      - { service: calc, mq: CalcLocal, workers: $WORKERS }
EOF
"$ZBUS" --config "$WORK/broker/node.yaml" --listen 127.0.0.1:0 --store "$WORK/broker/store" --ready-file "$WORK/broker/ready" &
ZBUS_PID=$!
for _ in $(seq 500); do [ -f "$WORK/broker/ready" ] && break; sleep 0.01; done
ZBUS_PORT=$(cut -d: -f2 "$WORK/broker/ready")
DIRECT_PORT=$(free_port)
mkdir -p "$WORK/service"
cat > "$WORK/service/node.yaml" <<EOF
node:
  name: rpc-service
  log_level: warning
modules:
  - module: rpc
    services:
      - { service: calc, mq: Calc, broker: "127.0.0.1:$ZBUS_PORT", workers: $WORKERS, direct: "127.0.0.1:$DIRECT_PORT" }
EOF
"$ZBUS" --config "$WORK/service/node.yaml" --listen 127.0.0.1:0 --store "$WORK/service/store" --ready-file "$WORK/service/ready" &
SERVICE_PID=$!
for _ in $(seq 500); do [ -f "$WORK/service/ready" ] && break; sleep 0.01; done
# Wait until the broker counts every worker as a consumer of Calc and of CalcLocal.
for mq in Calc CalcLocal; do
    for _ in $(seq 500); do
        COUNT=$(curl -s -m 2 -H 'cmd: query_mq' -H "mq: $mq" "http://127.0.0.1:$ZBUS_PORT/" | sed -n 's/.*"consumerCount":\([0-9]*\).*/\1/p')
        [ "${COUNT:-0}" -ge "$WORKERS" ] && break
        sleep 0.02
    done
done

echo "== calc.plus, $CALLERS concurrent callers, ${SECONDS_PER_RUN}s each (after 1s warm-up), $WORKERS MQ-RPC workers, $(nproc) cores"
# Two rounds per executor for the callers' tasks: Swift's default global executor, and NIO's event loops installed as
# the global executor (NIO's opt-in for servers; it saves a thread hop per call). Rates drift on this machine, so
# the rounds alternate and the median is reported.
ROUNDS=${ROUNDS:-2}
LINES=()
for round in $(seq "$ROUNDS"); do
    for executor in swift nio; do
        MQ=$(ZBUS_RPC_BENCH_EXECUTOR=$executor "$BENCH" mq "127.0.0.1:$ZBUS_PORT" Calc "$CALLERS" "$SECONDS_PER_RUN" 4)
        LOCAL=$(ZBUS_RPC_BENCH_EXECUTOR=$executor "$BENCH" mq "127.0.0.1:$ZBUS_PORT" CalcLocal "$CALLERS" "$SECONDS_PER_RUN" 4 | sed 's/mode=mq /mode=mq-local /')
        DIRECT=$(ZBUS_RPC_BENCH_EXECUTOR=$executor "$BENCH" direct "127.0.0.1:$DIRECT_PORT" "$CALLERS" "$SECONDS_PER_RUN" 4)
        echo "$MQ"
        echo "$LOCAL"
        echo "$DIRECT"
        LINES+=("$MQ" "$LOCAL" "$DIRECT")
    done
done
"$BENCH" local - 1 2   # no transport: what the invoker, codecs and processor cost per call on one core
python3 - "${LINES[@]}" <<'PY'
import statistics, sys
def field(line, name):
    return next(part.split("=", 1)[1] for part in line.split() if part.startswith(name + "="))
rates = {}
for line in sys.argv[1:]:
    rates.setdefault((field(line, "executor"), field(line, "mode")), []).append(float(field(line, "rate")))
for executor in ("swift", "nio"):
    mq = statistics.median(rates[(executor, "mq")])
    local = statistics.median(rates[(executor, "mq-local")])
    direct = statistics.median(rates[(executor, "direct")])
    print(f"executor={executor}: direct {direct:,.0f} calls/s; MQ-RPC, service in its own process {mq:,.0f} calls/s "
          f"= {mq / direct:.2f}x direct; MQ-RPC, service in the broker {local:,.0f} calls/s = {local / direct:.2f}x direct "
          f"({'meets' if local >= 0.5 * direct else 'BELOW'} issue 21's aim of 0.5x; "
          f"{'meets' if max(mq, local) >= 25000 else 'BELOW'} the 25,000 calls/s aim)")
PY
