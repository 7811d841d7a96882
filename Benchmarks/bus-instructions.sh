#!/usr/bin/env bash
# Benchmark (issue 21): user-space instructions per bus call, the node's and nginx's as a keep-alive reverse proxy, on
# the same service and the same load, counted by valgrind's callgrind; and where the node's go. An instruction count
# does not depend on how busy this shared machine is, so it shows the cost of a call where rates drift (it leaves out
# the kernel's part, which `proxy-vs-nginx.sh` shows equal for both: about 15 µs of system time a call).
#
#   bash Benchmarks/bus-instructions.sh [ZBUS_BINARY]     # default: this checkout's release build
#
# The service is nginx serving a 5-byte file; the callers are `ab -k -c 16` (keep-alive, 16 connections, one request
# in flight each). Measured, each in steady state (two loads of SMALL and LARGE calls after a warm-up; the difference
# of the counts over the difference of the calls, so start-up and connections drop out):
#   bus           `cmd: produce`, `mq: Bench`, `ack: 0`, `path: /q` to a node (one event loop) whose `http` adapter
#                 (16 workers) calls the service
#   bus-pipe      the same to MQ BenchPipe, whose adapter has `pipeline: 16`
#   nginx-proxy   nginx (one process) with `proxy_pass` to an upstream with `keepalive 64`
# then splits the node's instructions on a bus call by whose code runs them, and by step (Benchmarks/tools/callgrind-split.py).
# Needs valgrind, nginx, ab (apache2-utils) and python3. About three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
callgrind_workspace bus-instructions
NGINX_PID=
SERVICE_PID_FILE="$WORK/service.pid"
trap 'set +e; [ -n "$NODE_PID" ] && kill "$NODE_PID"; [ -n "$NGINX_PID" ] && kill "$NGINX_PID"; [ -f "$SERVICE_PID_FILE" ] && kill "$(cat "$SERVICE_PID_FILE")"; sleep 0.2; rm -rf "$WORK"' EXIT
for tool in nginx ab python3; do
    command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install nginx apache2-utils python3" >&2; exit 1; }
done
if [ $# -eq 0 ]; then
    build_release zbus
    set -- "$ZBUS"
fi
strip --strip-debug -o "$WORK/node" "$1"
SMALL=${SMALL:-1000}
LARGE=${LARGE:-3000}

chmod 755 "$WORK"   # nginx's worker runs as `nobody` when the script runs as root
mkdir -p "$WORK/www" "$WORK/tmp"
printf 'hello' > "$WORK/www/q"
SERVICE_PORT=$(free_port)
PROXY_PORT=$(free_port)
HTTP_COMMON="access_log off; keepalive_requests 1000000; client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp;
    fastcgi_temp_path $WORK/tmp; uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;"
cat > "$WORK/service.conf" <<CONF
worker_processes 1; daemon on; pid $SERVICE_PID_FILE; error_log $WORK/service-error.log;
events { worker_connections 4096; }
http { $HTTP_COMMON server { listen 127.0.0.1:$SERVICE_PORT; root $WORK/www; location / { default_type text/plain; } } }
CONF
# The proxy is one process (no master), so that callgrind counts the process that does the work.
cat > "$WORK/proxy.conf" <<CONF
master_process off; daemon off; pid $WORK/proxy.pid; error_log $WORK/proxy-error.log;
events { worker_connections 4096; }
http { $HTTP_COMMON
    upstream legacy { server 127.0.0.1:$SERVICE_PORT; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://legacy; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
nginx -c "$WORK/service.conf"

# steady_state PID DUMP_PREFIX URL [HEADER...]: warms up, then prints the instructions per call of process PID
# (callgrind, dumps DUMP_PREFIX.small and .large) between a load of SMALL calls and one of LARGE.
steady_state() {
    local pid=$1 dumps=$2 url=$3; shift 3
    local headers=()
    for header in "$@"; do headers+=(-H "$header"); done
    ab -q -k -c 16 -n 1500 "${headers[@]}" "$url" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    ab -q -k -c 16 -n "$SMALL" "${headers[@]}" "$url" >/dev/null
    callgrind_control --dump="$dumps.small" "$pid" >/dev/null 2>&1
    callgrind_control -z "$pid" >/dev/null 2>&1
    local out
    out=$(ab -k -c 16 -n "$LARGE" "${headers[@]}" "$url" 2>/dev/null)
    grep -q "^Failed requests: *0" <<<"$out" && ! grep -q "Non-2xx" <<<"$out" || { echo "failed calls to $url" >&2; exit 1; }
    callgrind_control --dump="$dumps.large" "$pid" >/dev/null 2>&1
    local small large
    small=$(callgrind_total "$(dump_file "$dumps.small")")
    large=$(callgrind_total "$(dump_file "$dumps.large")")
    echo $(( (large - small) / (LARGE - SMALL) ))
}
# dump_file TRIGGER: the callgrind file whose `desc: Trigger:` names TRIGGER.
dump_file() { grep -l "^desc: Trigger: .*$1\$" "$WORK"/run/callgrind.out* "$WORK"/callgrind.nginx* 2>/dev/null | head -1; }

mkdir -p "$WORK/run"
cat > "$WORK/run/node.yaml" <<YAML
node:
  log_level: warning
  threads: 1
modules:
  - module: mq
  - module: proxy
    adapters:
      - { name: bench, kind: http, mq: Bench, target: "http://127.0.0.1:$SERVICE_PORT", workers: 16, max_in_flight: 16, timeout: 5s }
      - { name: bench-pipe, kind: http, mq: BenchPipe, target: "http://127.0.0.1:$SERVICE_PORT", workers: 16, max_in_flight: 16, timeout: 5s, pipeline: 16 }
YAML
# Full function names in the dumps, for the split.
CALLGRIND_OPTIONS="--compress-strings=no --compress-pos=no"
SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind $CALLGRIND_OPTIONS --callgrind-out-file="$WORK/run/callgrind.out" "$WORK/node" \
    --config "$WORK/run/node.yaml" --listen 127.0.0.1:0 --store "$WORK/run/store" --ready-file "$WORK/run/ready" >/dev/null 2>&1 &
NODE_PID=$!
for _ in $(seq 600); do [ -f "$WORK/run/ready" ] && break; sleep 0.1; done
[ -f "$WORK/run/ready" ] || { echo "the node did not start under valgrind" >&2; exit 1; }
NODE_PORT=$(cut -d: -f2 "$WORK/run/ready")
# The adapters' workers consume once they are up: wait until the first call is answered.
for _ in $(seq 300); do
    [ "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: Bench' -H 'ack: 0' -H 'path: /q' "http://127.0.0.1:$NODE_PORT/")" = hello ] && break
    sleep 0.2
done
ZBUS_HEADERS=("cmd: produce" "ack: 0" "path: /q")
BUS=$(steady_state "$NODE_PID" bus "http://127.0.0.1:$NODE_PORT/" "${ZBUS_HEADERS[@]}" "mq: Bench")
BUS_PIPE=$(steady_state "$NODE_PID" pipe "http://127.0.0.1:$NODE_PORT/" "${ZBUS_HEADERS[@]}" "mq: BenchPipe")
kill -INT "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true
NODE_PID=

valgrind --tool=callgrind $CALLGRIND_OPTIONS --callgrind-out-file="$WORK/callgrind.nginx" nginx -c "$WORK/proxy.conf" >/dev/null 2>&1 &
NGINX_PID=$!
for _ in $(seq 300); do [ "$(curl -s -m 5 "http://127.0.0.1:$PROXY_PORT/q")" = hello ] && break; sleep 0.2; done
NGINX=$(steady_state "$NGINX_PID" nginx "http://127.0.0.1:$PROXY_PORT/q")

echo "== user-space instructions per call (callgrind, steady state: ($LARGE - $SMALL) calls of ab -k -c16), GET /q (5 bytes) from nginx"
printf "    %-36s %9s\n" "nginx-proxy" "$NGINX"
printf "    %-36s %9s  %.2fx nginx\n" "bus (http adapter)" "$BUS" "$(python3 -c "print($BUS / $NGINX)")"
printf "    %-36s %9s  %.2fx nginx\n" "bus-pipe (pipeline: 16)" "$BUS_PIPE" "$(python3 -c "print($BUS_PIPE / $NGINX)")"
echo "== the node's instructions on a bus call, by whose code runs them ($LARGE calls, connections included)"
python3 Benchmarks/tools/callgrind-split.py "$LARGE" "$(dump_file bus.large)"
