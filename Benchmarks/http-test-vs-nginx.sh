#!/usr/bin/env bash
# Benchmark: `cmd=test` over HTTP keep-alive with ab, zbus against nginx (one worker, a 5-byte static file), same run.
#
#   bash Benchmarks/http-test-vs-nginx.sh [requests] [concurrency] [rounds]
#
# Needs: nginx and ab (apt-get install nginx apache2-utils). Builds zbus in release mode. Rounds alternate the two
# servers so that drift on a shared machine hits both; the report gives each round and the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-200000}
CONCURRENCY=${2:-20}
ROUNDS=${3:-3}
WORK=$(mktemp -d /tmp/zbus-bench-http.XXXXXX)
cleanup() {
    [ -n "${ZBUS_PID:-}" ] && kill "$ZBUS_PID" 2>/dev/null || true
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v nginx >/dev/null || { echo "nginx missing: apt-get install nginx" >&2; exit 1; }
command -v ab >/dev/null || { echo "ab missing: apt-get install apache2-utils" >&2; exit 1; }

. Benchmarks/common.sh
build_release zbus



NGINX_PORT=$(free_port)
mkdir -p "$WORK/www" "$WORK/tmp"
printf 'hello' > "$WORK/www/test"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
    uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; location / { default_type text/plain; } }
}
CONF
nginx -c "$WORK/nginx.conf"

"$ZBUS" --listen 127.0.0.1:0 --store "$WORK/store" --log-level warning --ready-file "$WORK/ready" &
ZBUS_PID=$!
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
ZBUS_ADDR=$(cat "$WORK/ready")

rps() { ab -q -k -c "$CONCURRENCY" -n "$REQUESTS" "$1" 2>/dev/null | awk '/Requests per second/ {print $4}'; }

# Warm both up (JIT-free, but page cache, sockets and CPU frequency settle).
ab -q -k -c "$CONCURRENCY" -n 20000 "http://$ZBUS_ADDR/?cmd=test" >/dev/null 2>&1
ab -q -k -c "$CONCURRENCY" -n 20000 "http://127.0.0.1:$NGINX_PORT/test" >/dev/null 2>&1

echo "ab -k -c $CONCURRENCY -n $REQUESTS; zbus: http://$ZBUS_ADDR/?cmd=test; nginx (1 worker): http://127.0.0.1:$NGINX_PORT/test"
RATIOS=()
for round in $(seq "$ROUNDS"); do
    Z=$(rps "http://$ZBUS_ADDR/?cmd=test")
    N=$(rps "http://127.0.0.1:$NGINX_PORT/test")
    R=$(python3 -c "print(f'{$Z/$N:.2f}')")
    RATIOS+=("$R")
    echo "round $round: zbus $Z req/s, nginx $N req/s, ratio $R"
done
python3 -c "import statistics,sys; print('median ratio zbus/nginx:', statistics.median(map(float, sys.argv[1:])))" "${RATIOS[@]}"
