#!/usr/bin/env bash
# Benchmark (issue 21): a legacy service called directly, through nginx as a keep-alive reverse proxy, and through the
# bus (`http` adapter, `tcp` adapter), same release build, same service, same load, same run.
#
#   bash Benchmarks/proxy-vs-nginx.sh [SECONDS] [CONNECTIONS] [ROUNDS] [WORKERS]
#
# Defaults: 5 s per measurement, wrk -t1 -c16, 3 rounds, 16 adapter workers. Needs nginx, wrk and gcc
# (apt-get install nginx wrk gcc). ZBUS=... and PROXY_BENCH=... take ready binaries instead of building.
#
# The service: nginx (one worker) serving a 5-byte file `/q` ("hello"); its TCP twin, Benchmarks/tools/line-service.c
# (one thread, epoll, answers every line with "hello"), for the `tcp` adapter. Each round measures, in turn:
#   direct        wrk -t1 -cN straight to the HTTP service
#   nginx-proxy   wrk through a second nginx (one worker): proxy_pass to an `upstream` with `keepalive 64`
#   bus-wrk       wrk with zbus headers (cmd: produce, mq: Bench, ack: 0, path: /q) to a zbus node whose `http`
#                 adapter (WORKERS workers, max_in_flight WORKERS) calls the service: what a curl-style caller sees
#   bus-invoker   the Swift MqInvoker (zbus-proxy-bench, N callers, one call in flight each) on the same node and MQ
#   tcp-direct    Benchmarks/tools/line-load.c (one thread, epoll, N connections, one line in flight each) to the
#                 TCP service
#   tcp-bus       wrk with zbus headers to MQ BenchTcp, served by the node's `tcp` adapter (newline framing)
# and prints each rate; the summary gives medians over the rounds and the ratios against nginx's reverse proxy and
# against direct. Ports are free ones chosen at run time; every process started here is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
SECONDS_PER_RUN=${1:-5}
CONNECTIONS=${2:-16}
ROUNDS=${3:-3}
WORKERS=${4:-16}
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

# nginx_start NAME SERVER_BLOCK: one nginx master with one worker, its files under $WORK.
nginx_start() {
    local name=$1 server=$2
    mkdir -p "$WORK/$name-tmp"
    cat > "$WORK/nginx-$name.conf" <<CONF
worker_processes 1;
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
    server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://legacy; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
"$WORK/line-service" "$LINE_PORT" hello &
LINE_PID=$!

cat > "$WORK/node.yaml" <<YAML
node:
  log_level: warning
modules:
  - module: mq
  - module: proxy
    adapters:
      - { name: bench, kind: http, mq: Bench, target: "http://127.0.0.1:$SERVICE_PORT", workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s }
      - { name: bench-tcp, kind: tcp, mq: BenchTcp, target: "127.0.0.1:$LINE_PORT", framing: newline, workers: $WORKERS, max_in_flight: $WORKERS, timeout: 5s }
YAML
rm -f "$WORK/ready"
"$ZBUS" --config "$WORK/node.yaml" --listen 127.0.0.1:0 --store "$WORK/store" --ready-file "$WORK/ready" &
ZBUS_PID=$!
for _ in $(seq 400); do [ -f "$WORK/ready" ] && break; sleep 0.01; done
[ -f "$WORK/ready" ] || { echo "the zbus node did not start" >&2; exit 1; }
ZBUS_PORT=$(cut -d: -f2 "$WORK/ready")
# Wait until the broker counts every adapter worker as a consumer of both MQs.
for mq in Bench BenchTcp; do
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

# Every path answers "hello" before anything is measured.
check() {
    local name=$1 got=$2
    [ "$got" = hello ] || { echo "$name answered '$got', not 'hello'" >&2; exit 1; }
}
check direct "$(curl -s -m 5 "http://127.0.0.1:$SERVICE_PORT/q")"
check nginx-proxy "$(curl -s -m 5 "http://127.0.0.1:$PROXY_PORT/q")"
check bus-http "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: Bench' -H 'ack: 0' -H 'path: /q' "http://127.0.0.1:$ZBUS_PORT/")"
check bus-tcp "$(curl -s -m 5 -H 'cmd: produce' -H 'mq: BenchTcp' -H 'ack: 0' "http://127.0.0.1:$ZBUS_PORT/")"

# wrk_rate URL [SCRIPT]: requests/s, after a 1 s warm-up; fails on socket errors or non-2xx answers.
wrk_rate() {
    local url=$1 script=${2:-}
    local args=(-t1 -c"$CONNECTIONS")
    [ -n "$script" ] && args+=(-s "$WORK/$script.lua")
    wrk "${args[@]}" -d1s "$url" >/dev/null 2>&1
    local out
    out=$(wrk "${args[@]}" -d"${SECONDS_PER_RUN}s" "$url" 2>&1)
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "wrk $url ${script:+($script)}: $(grep "Non-2xx\|Socket errors" <<<"$out" | tr '\n' ' ')" >&2
    fi
    awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out"
}

echo "== GET /q (5 bytes), wrk -t1 -c$CONNECTIONS, ${SECONDS_PER_RUN}s each after 1s warm-up, $ROUNDS rounds, $WORKERS adapter workers, $(nproc) cores, CPU probe $(cpu_probe) ms"
echo "   service 127.0.0.1:$SERVICE_PORT (nginx), reverse proxy :$PROXY_PORT (nginx), TCP twin :$LINE_PORT, zbus :$ZBUS_PORT"
LINES=()
for round in $(seq "$ROUNDS"); do
    DIRECT=$(wrk_rate "http://127.0.0.1:$SERVICE_PORT/q")
    NGINX=$(wrk_rate "http://127.0.0.1:$PROXY_PORT/q")
    BUS=$(wrk_rate "http://127.0.0.1:$ZBUS_PORT/" bus)
    INVOKER=$("$PROXY_BENCH" - "127.0.0.1:$ZBUS_PORT" Bench "$CONNECTIONS" "$SECONDS_PER_RUN" hello | sed -n 's/.*rate=\([0-9]*\).*errors=\([0-9]*\).*/\1 \2/p')
    INVOKER_ERRORS=${INVOKER#* }
    INVOKER=${INVOKER% *}
    [ "$INVOKER_ERRORS" = 0 ] || echo "MqInvoker: $INVOKER_ERRORS errors" >&2
    TCP_DIRECT=$("$WORK/line-load" 127.0.0.1 "$LINE_PORT" "$CONNECTIONS" "$SECONDS_PER_RUN" hello | sed -n 's/.*rate=\([0-9]*\) errors=\([0-9]*\).*/\1/p')
    TCP_BUS=$(wrk_rate "http://127.0.0.1:$ZBUS_PORT/" tcp)
    echo "round $round: direct $DIRECT, nginx-proxy $NGINX, bus-wrk $BUS, bus-invoker $INVOKER, tcp-direct $TCP_DIRECT, tcp-bus $TCP_BUS req/s"
    LINES+=("$DIRECT,$NGINX,$BUS,$INVOKER,$TCP_DIRECT,$TCP_BUS")
done
echo "   CPU probe after: $(cpu_probe) ms"
python3 - "${LINES[@]}" <<'PY'
import statistics, sys
names = ["direct", "nginx-proxy", "bus-wrk", "bus-invoker", "tcp-direct", "tcp-bus"]
rounds = [list(map(float, line.split(","))) for line in sys.argv[1:]]
median = {name: statistics.median(r[i] for r in rounds) for i, name in enumerate(names)}
def ratios(name, base):
    per_round = [r[names.index(name)] / r[names.index(base)] for r in rounds]
    return statistics.median(per_round), min(per_round), max(per_round)
print("medians (req/s) and ratios (median of the rounds' ratios, range):")
for name in names:
    line = f"  {name:12} {median[name]:>9,.0f}"
    if name in ("nginx-proxy", "bus-wrk", "bus-invoker"):
        m, lo, hi = ratios(name, "direct")
        line += f"   {m:.2f}x direct ({lo:.2f}-{hi:.2f})"
    if name in ("bus-wrk", "bus-invoker"):
        m, lo, hi = ratios(name, "nginx-proxy")
        line += f"   {m:.2f}x nginx-proxy ({lo:.2f}-{hi:.2f})"
    if name == "tcp-bus":
        m, lo, hi = ratios(name, "tcp-direct")
        line += f"   {m:.2f}x tcp-direct ({lo:.2f}-{hi:.2f})"
        m, lo, hi = ratios(name, "nginx-proxy")
        line += f"   {m:.2f}x nginx-proxy ({lo:.2f}-{hi:.2f})"
    print(line)
PY
