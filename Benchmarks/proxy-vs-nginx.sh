#!/usr/bin/env bash
# Benchmark (issue 21): a legacy service called directly, through nginx as a keep-alive reverse proxy, and through the
# bus (`http` adapter, `tcp` adapter), same release build, same service, same load, same run.
#
#   bash Benchmarks/proxy-vs-nginx.sh [SECONDS] [CONNECTIONS] [ROUNDS] [WORKERS] [PIPELINE]
#
# Defaults: 5 s per measurement, wrk -t1 -c16, 3 rounds, 16 adapter workers, pipeline 16 for the pipelined paths. Needs nginx, wrk and gcc
# (apt-get install nginx wrk gcc). ZBUS=... and PROXY_BENCH=... take ready binaries instead of building.
#
# THREADS (default 1) is both the reverse proxy's `worker_processes` and the node's event loops (`node.threads`), so
# the two proxies get the same number of threads: on a machine whose cores the callers and the service share, a proxy
# with more threads than its peer pays for the extra wake-ups and cross-thread handoffs, and the comparison would
# measure that rather than the cost of a call. Run THREADS=2 for the two-thread pairing.
#
# The service: nginx (one worker) serving a 5-byte file `/q` ("hello"); its TCP twin, Benchmarks/tools/line-service.c
# (one thread, epoll, answers every line with "hello"), for the `tcp` adapter. Each round measures, in turn:
#   direct        wrk -t1 -cN straight to the HTTP service
#   nginx-proxy   wrk through a second nginx (THREADS workers): proxy_pass to an `upstream` with `keepalive 64`
#   bus-wrk       wrk with zbus headers (cmd: produce, mq: Bench, ack: 0, path: /q) to a zbus node whose `http`
#                 adapter (WORKERS workers, max_in_flight WORKERS) calls the service: what a curl-style caller sees
#   bus-invoker   the Swift MqInvoker (zbus-proxy-bench, N callers, one call in flight each) on the same node and MQ
#   tcp-direct    Benchmarks/tools/line-load.c (one thread, epoll, N connections, one line in flight each) to the
#                 TCP service
#   tcp-bus       wrk with zbus headers to MQ BenchTcp, served by the node's `tcp` adapter (newline framing)
#   bus-pipe      bus-wrk to MQ BenchPipe, whose `http` adapter has `pipeline: PIPELINE` (the workers of an event loop
#                 share connections carrying up to PIPELINE requests; nginx serves pipelined requests in order)
#   invoker-pipe  bus-invoker to MQ BenchPipe
#   tcp-pipe      tcp-bus to MQ BenchTcpPipe, whose `tcp` adapter has `pipeline: PIPELINE`
# and prints each rate with the server side's CPU time per request (read from /proc: the service's process, plus
# nginx's proxy worker or the zbus node; not the callers), a figure that the load of other work on a shared machine
# moves far less than the rates. The summary gives medians over the rounds and the ratios against nginx's reverse
# proxy and against direct. Ports are free ones chosen at run time; every process started here is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
SECONDS_PER_RUN=${1:-5}
CONNECTIONS=${2:-16}
ROUNDS=${3:-3}
WORKERS=${4:-16}
PIPELINE=${5:-16}
THREADS=${THREADS:-1}
SCRATCH=${SCRATCH:-.build-release}
WORK=$(mktemp -d /tmp/zbus-bench-proxy-nginx.XXXXXX)
LINE_PID=
cleanup() {
    set +e   # stop everything even when one of them is gone already
    [ -n "$LINE_PID" ] && kill "$LINE_PID" 2>/dev/null && wait "$LINE_PID" 2>/dev/null
    stop_zbus
    for pidfile in "$WORK"/nginx-*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    done
    sleep 0.2
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx wrk gcc curl; do
    command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install nginx wrk gcc curl" >&2; exit 1; }
done

if [ -n "${ZBUS:-}" ] && [ -n "${PROXY_BENCH:-}" ]; then
    echo "binaries given: $ZBUS, $PROXY_BENCH"
else
    build_release zbus zbus-proxy-bench
    PROXY_BENCH=$BIN/zbus-proxy-bench
fi
gcc -O2 -o "$WORK/line-service" Benchmarks/tools/line-service.c
gcc -O2 -o "$WORK/line-load" Benchmarks/tools/line-load.c

SERVICE_PORT=$(free_port)
PROXY_PORT=$(free_port)
LINE_PORT=$(free_port)

# nginx_start NAME SERVER_BLOCK [WORKERS]: one nginx master with WORKERS workers (default 1), its files under $WORK.
nginx_start() {
    local name=$1 server=$2 workers=${3:-1}
    mkdir -p "$WORK/$name-tmp"
    cat > "$WORK/nginx-$name.conf" <<CONF
worker_processes $workers;
daemon on;
pid $WORK/nginx-$name.pid;
error_log $WORK/nginx-$name-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/$name-tmp; proxy_temp_path $WORK/$name-tmp; fastcgi_temp_path $WORK/$name-tmp;
    uwsgi_temp_path $WORK/$name-tmp; scgi_temp_path $WORK/$name-tmp;
    keepalive_requests 1000000;
    $server
}
CONF
    nginx -c "$WORK/nginx-$name.conf"
}

mkdir -p "$WORK/www"
chmod 755 "$WORK"   # nginx's worker runs as `nobody` when the script runs as root
printf 'hello' > "$WORK/www/q"
nginx_start service "server { listen 127.0.0.1:$SERVICE_PORT; root $WORK/www; location / { default_type text/plain; } }"
nginx_start proxy "upstream legacy { server 127.0.0.1:$SERVICE_PORT; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://legacy; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" "$THREADS"
"$WORK/line-service" "$LINE_PORT" hello &
LINE_PID=$!

cat > "$WORK/node.yaml" <<YAML
node:
  log_level: warning
  threads: $THREADS
modules:
  - module: mq
  - module: proxy
    adapters:
      - { name: bench, kind: http, mq: Bench, target: "http://127.0.0.1:$SERVICE_PORT", workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s }
      - { name: bench-tcp, kind: tcp, mq: BenchTcp, target: "127.0.0.1:$LINE_PORT", framing: newline, workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s }
      - { name: bench-pipe, kind: http, mq: BenchPipe, target: "http://127.0.0.1:$SERVICE_PORT", workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s, pipeline: $PIPELINE }
      - { name: bench-tcp-pipe, kind: tcp, mq: BenchTcpPipe, target: "127.0.0.1:$LINE_PORT", framing: newline, workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s, pipeline: $PIPELINE }
YAML
rm -f "$WORK/ready"
"$ZBUS" --config "$WORK/node.yaml" --listen 127.0.0.1:0 --store "$WORK/store" --ready-file "$WORK/ready" &
ZBUS_PID=$!
for _ in $(seq 400); do [ -f "$WORK/ready" ] && break; sleep 0.01; done
[ -f "$WORK/ready" ] || { echo "the zbus node did not start" >&2; exit 1; }
ZBUS_PORT=$(cut -d: -f2 "$WORK/ready")
# Wait until the broker counts every adapter worker as a consumer of both MQs.
for mq in Bench BenchTcp BenchPipe BenchTcpPipe; do
    for _ in $(seq 500); do
        COUNT=$(curl -s -m 2 -H 'cmd: query_mq' -H "mq: $mq" "http://127.0.0.1:$ZBUS_PORT/" | sed -n 's/.*"consumerCount":\([0-9]*\).*/\1/p')
        [ "${COUNT:-0}" -ge "$WORKERS" ] && break
        sleep 0.02
    done
done

# wrk's callers of the bus: every request a produce with ack 0, answered by the adapter's routed reply.
zbus_script() {
    cat > "$WORK/$1.lua" <<LUA
wrk.method = "GET"
wrk.path = "/"
wrk.headers["cmd"] = "produce"
wrk.headers["mq"] = "$2"
wrk.headers["ack"] = "0"
wrk.headers["path"] = "/q"
LUA
}
zbus_script bus Bench
zbus_script tcp BenchTcp
zbus_script pipe BenchPipe
zbus_script tcppipe BenchTcpPipe

# Every path answers "hello" before anything is measured.
check() {
    local name=$1 got=$2
    [ "$got" = hello ] || { echo "$name answered '$got', not 'hello'" >&2; exit 1; }
}
check direct "$(curl -s -m 5 "http://127.0.0.1:$SERVICE_PORT/q")"
check nginx-proxy "$(curl -s -m 5 "http://127.0.0.1:$PROXY_PORT/q")"
check bus-http "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: Bench' -H 'ack: 0' -H 'path: /q' "http://127.0.0.1:$ZBUS_PORT/")"
check bus-tcp "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: BenchTcp' -H 'ack: 0' "http://127.0.0.1:$ZBUS_PORT/")"
check bus-pipe "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: BenchPipe' -H 'ack: 0' -H 'path: /q' "http://127.0.0.1:$ZBUS_PORT/")"
check tcp-pipe "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: BenchTcpPipe' -H 'ack: 0' "http://127.0.0.1:$ZBUS_PORT/")"

# The server side of each path, whose CPU time per request the summary reports: a figure the other engineers' load on
# a shared machine moves far less than the rates. nginx's work is done by its workers.
SERVICE_WORKER=$(pgrep -P "$(cat "$WORK/nginx-service.pid")" | head -1)
PROXY_WORKERS=$(pgrep -P "$(cat "$WORK/nginx-proxy.pid")" | tr '\n' ' ')
cpu_sum() { local total=0; for pid in "$@"; do total=$((total + $(process_cpu "$pid"))); done; echo "$total"; }

# measure NAME "PIDS" COMMAND...: runs COMMAND, which prints "RATE REQUESTS", and prints "RATE CPU_US_PER_REQUEST" where
# the CPU is what PIDS used meanwhile.
measure() {
    local pids=$2; shift 2
    local before after result
    before=$(cpu_sum $pids)
    result=$("$@")
    after=$(cpu_sum $pids)
    echo "${result% *} $(cpu_per_request "$before" "$after" "${result#* }")"
}

# wrk_run URL [SCRIPT]: "RATE REQUESTS" of one run; reports socket errors and non-2xx answers.
wrk_run() {
    local url=$1 script=${2:-}
    local args=(-t1 -c"$CONNECTIONS")
    [ -n "$script" ] && args+=(-s "$WORK/$script.lua")
    local out
    out=$(wrk "${args[@]}" -d"${SECONDS_PER_RUN}s" "$url" 2>&1)
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "wrk $url ${script:+($script)}: $(grep "Non-2xx\|Socket errors" <<<"$out" | tr '\n' ' ')" >&2
    fi
    echo "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}
# wrk_path URL [SCRIPT] PIDS: a 1 s warm-up, then the measured run.
wrk_path() {
    local url=$1 script=$2 pids=$3
    local args=(-t1 -c"$CONNECTIONS")
    [ -n "$script" ] && args+=(-s "$WORK/$script.lua")
    wrk "${args[@]}" -d1s "$url" >/dev/null 2>&1
    measure wrk "$pids" wrk_run "$url" "$script"
}
# The Swift MqInvoker and line-load warm up for 1 s themselves and print only the measured rate: the CPU is divided
# by rate x (SECONDS + 1), the calls of both parts.
invoker_run() {
    local line
    line=$("$PROXY_BENCH" - "127.0.0.1:$ZBUS_PORT" "${1:-Bench}" "$CONNECTIONS" "$SECONDS_PER_RUN" hello)
    local rate errors
    rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$line")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    [ "$errors" = 0 ] || echo "MqInvoker: $errors errors" >&2
    echo "$rate $(python3 -c "print(int($rate * ($SECONDS_PER_RUN + 1)))")"
}
line_run() {
    local line rate errors
    line=$("$WORK/line-load" 127.0.0.1 "$LINE_PORT" "$CONNECTIONS" "$SECONDS_PER_RUN" hello)
    rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$line")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    [ "$errors" = 0 ] || echo "line-load: $errors wrong replies" >&2
    echo "$rate $(python3 -c "print(int($rate * ($SECONDS_PER_RUN + 1)))")"
}

echo "== GET /q (5 bytes), wrk -t1 -c$CONNECTIONS, ${SECONDS_PER_RUN}s each after 1s warm-up, $ROUNDS rounds, $WORKERS adapter workers, pipeline $PIPELINE, $THREADS proxy thread(s) (nginx workers, node event loops), $(nproc) cores, CPU probe $(cpu_probe) ms"
echo "   service 127.0.0.1:$SERVICE_PORT (nginx), reverse proxy :$PROXY_PORT (nginx), TCP twin :$LINE_PORT, zbus :$ZBUS_PORT"
echo "   each figure: req/s (server-side CPU µs per request: the service, plus the reverse proxy or the zbus node)"
LINES=()
for round in $(seq "$ROUNDS"); do
    DIRECT=$(wrk_path "http://127.0.0.1:$SERVICE_PORT/q" "" "$SERVICE_WORKER")
    NGINX=$(wrk_path "http://127.0.0.1:$PROXY_PORT/q" "" "$SERVICE_WORKER $PROXY_WORKERS")
    BUS=$(wrk_path "http://127.0.0.1:$ZBUS_PORT/" bus "$SERVICE_WORKER $ZBUS_PID")
    INVOKER=$(measure invoker "$SERVICE_WORKER $ZBUS_PID" invoker_run)
    TCP_DIRECT=$(measure line "$LINE_PID" line_run)
    TCP_BUS=$(wrk_path "http://127.0.0.1:$ZBUS_PORT/" tcp "$LINE_PID $ZBUS_PID")
    PIPE=$(wrk_path "http://127.0.0.1:$ZBUS_PORT/" pipe "$SERVICE_WORKER $ZBUS_PID")
    INVOKER_PIPE=$(measure invoker "$SERVICE_WORKER $ZBUS_PID" invoker_run BenchPipe)
    TCP_PIPE=$(wrk_path "http://127.0.0.1:$ZBUS_PORT/" tcppipe "$LINE_PID $ZBUS_PID")
    show() { echo "${1% *} (${1#* })"; }
    echo "round $round: direct $(show "$DIRECT"), nginx-proxy $(show "$NGINX"), bus-wrk $(show "$BUS"), bus-invoker $(show "$INVOKER"), tcp-direct $(show "$TCP_DIRECT"), tcp-bus $(show "$TCP_BUS"), bus-pipe $(show "$PIPE"), invoker-pipe $(show "$INVOKER_PIPE"), tcp-pipe $(show "$TCP_PIPE")"
    LINES+=("$DIRECT,$NGINX,$BUS,$INVOKER,$TCP_DIRECT,$TCP_BUS,$PIPE,$INVOKER_PIPE,$TCP_PIPE")
done
echo "   CPU probe after: $(cpu_probe) ms"
python3 - "${LINES[@]}" <<'PY'
import statistics, sys
names = ["direct", "nginx-proxy", "bus-wrk", "bus-invoker", "tcp-direct", "tcp-bus", "bus-pipe", "invoker-pipe", "tcp-pipe"]
rounds = [[tuple(map(float, cell.split())) for cell in line.split(",")] for line in sys.argv[1:]]
def column(name, part):
    return [r[names.index(name)][part] for r in rounds]
def ratio(name, base, part=0):
    per_round = [a / b for a, b in zip(column(name, part), column(base, part))]
    return f"{statistics.median(per_round):.2f}x {base} ({min(per_round):.2f}-{max(per_round):.2f})"
print("medians: req/s, server-side CPU us/request; rate ratios: median of the rounds' ratios (range)")
for name in names:
    line = f"  {name:12} {statistics.median(column(name, 0)):>9,.0f} req/s {statistics.median(column(name, 1)):>6.1f} us"
    if name in ("nginx-proxy", "bus-wrk", "bus-invoker", "bus-pipe", "invoker-pipe"):
        line += "   " + ratio(name, "direct")
    if name in ("bus-wrk", "bus-invoker", "bus-pipe", "invoker-pipe"):
        line += "   " + ratio(name, "nginx-proxy") + "   CPU " + ratio(name, "nginx-proxy", 1)
    if name in ("tcp-bus", "tcp-pipe"):
        line += "   " + ratio(name, "tcp-direct") + "   " + ratio(name, "nginx-proxy") + "   CPU " + ratio(name, "nginx-proxy", 1)
    print(line)
PY
