#!/usr/bin/env bash
# Benchmark (acceptance 4 of the service bus): calls/s through the `http` proxy adapter against calling the same
# backend directly, same release build, same run.
#
#   bash Benchmarks/proxy.sh [SECONDS] [CALLERS] [WORKERS]
#
# Two processes: a release broker with the `mq` and `proxy` modules (adapter `kind: http`, MQ `Bench`, WORKERS
# consumer connections), and zbus-proxy-bench, which hosts the legacy HTTP backend and runs CALLERS concurrent callers
# (one call in flight each) for SECONDS: first straight to the backend over keep-alive connections, then through the
# bus (MqInvoker: produce ack 0 → adapter → backend → routed answer). Prints both rates and the overhead ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
SECONDS_PER_RUN=${1:-5}
CALLERS=${2:-16}
WORKERS=${3:-16}
SCRATCH=${SCRATCH:-.build-proxy}
WORK=$(mktemp -d /tmp/zbus-bench-proxy.XXXXXX)
cleanup() { stop_zbus; rm -rf "$WORK"; }
trap cleanup EXIT

build_release zbus zbus-proxy-bench
BACKEND_PORT=$(free_port)

cat > "$WORK/node.yaml" <<YAML
node:
  log_level: warning
modules:
  - module: mq
  - module: proxy
    adapters:
      - { name: bench, kind: http, mq: Bench, target: "http://127.0.0.1:$BACKEND_PORT", workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s }
YAML
"$ZBUS" --config "$WORK/node.yaml" --listen 127.0.0.1:0 --store "$WORK/store" --ready-file "$WORK/ready" &
ZBUS_PID=$!
for _ in $(seq 400); do [ -f "$WORK/ready" ] && break; sleep 0.01; done
ZBUS_PORT=$(cut -d: -f2 "$WORK/ready")
# Wait until the broker counts every adapter worker as a consumer of Bench.
for _ in $(seq 500); do
    COUNT=$(curl -s -m 2 -H 'cmd: query_mq' -H 'mq: Bench' "http://127.0.0.1:$ZBUS_PORT/" | sed -n 's/.*"consumerCount":\([0-9]*\).*/\1/p')
    [ "${COUNT:-0}" -ge "$WORKERS" ] && break
    sleep 0.02
done

echo "== GET /q on a keep-alive HTTP backend, $CALLERS concurrent callers, ${SECONDS_PER_RUN}s each (after 1s warm-up), $WORKERS adapter workers, $(nproc) cores"
"$BIN/zbus-proxy-bench" "$BACKEND_PORT" "127.0.0.1:$ZBUS_PORT" Bench "$CALLERS" "$SECONDS_PER_RUN"
