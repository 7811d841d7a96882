#!/usr/bin/env bash
# Benchmark: what TLS costs. Produce and consume with zload against one zbus node on its plain port and on its TLS
# port, next to redis-benchmark LPUSH/RPOP against one redis-server on its plain port and on its `--tls-port`: same
# run, same load (16 connections, one request in flight each, 11-byte bodies), rounds alternating. The TLS runs use
# the same load generators as the plain ones (zload built with Benchmarks/zload-tls.h; redis-benchmark --tls), over
# connections opened once, so the figure is the cost of encrypting the traffic, not of handshakes. Each system's
# TLS rate is reported as a ratio to its own plain rate; the aim for zbus is at least 0.7. Besides the rates it
# prints each server's CPU time per request (user + system, from /proc).
#
#   bash Benchmarks/tls-vs-plain.sh [messages-per-connection]
#
# Needs: openssl, libssl-dev (zload's TLS build), gcc, redis-server and redis-benchmark built with TLS (Debian's are).
# Builds zbus in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
PER_CONN=${1:-20000}
CONNS=16
TOTAL=$((PER_CONN * CONNS))
ROUNDS=${ROUNDS:-5}
WORK=$(mktemp -d /tmp/zbus-bench-tls.XXXXXX)
cleanup() { stop_zbus; [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

build_release zbus
build_zload "$WORK/zload"
ZLOAD="$WORK/zload"
ZLOAD_SOURCE_FILE=${ZLOAD_SOURCE:-$(cd .. && pwd)/shared/tools/zload.c}
gcc -O2 -pthread -include Benchmarks/zload-tls.h -o "$WORK/zload-tls" "$ZLOAD_SOURCE_FILE" -lssl -lcrypto
ZLOAD_TLS="$WORK/zload-tls"

# A CA and a certificate for 127.0.0.1 signed by it (P-256 keys, as a current deployment would choose).
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key" 2>/dev/null
openssl req -x509 -new -key "$WORK/ca.key" -sha256 -days 2 -subj /CN=zbus-bench-ca -out "$WORK/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/server.key" 2>/dev/null
openssl req -new -key "$WORK/server.key" -subj /CN=127.0.0.1 -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 -sha256 \
    -extfile "$WORK/san.ext" -out "$WORK/server.pem" 2>/dev/null
export ZLOAD_TLS_CA="$WORK/ca.pem"

# One zbus node with both ports.
ZBUS_TLS_PORT=$(free_port)
cat > "$WORK/node.yaml" <<EOF
node:
  log_level: warning
  tls:
    listen: 127.0.0.1:$ZBUS_TLS_PORT
    cert_file: $WORK/server.pem
    key_file: $WORK/server.key
modules:
  - module: mq
    fsync: interval
EOF
rm -f "$WORK/ready"
"$ZBUS" --config "$WORK/node.yaml" --listen 127.0.0.1:0 --store "$WORK/store" --ready-file "$WORK/ready" &
ZBUS_PID=$!
for _ in $(seq 400); do [ -f "$WORK/ready" ] && break; sleep 0.01; done
ZBUS_PORT=$(head -1 "$WORK/ready" | cut -d: -f2)

# One redis-server with both ports.
REDIS_PORT=$(free_port)
REDIS_TLS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$WORK/server.pem" \
    --tls-key-file "$WORK/server.key" --tls-ca-cert-file "$WORK/ca.pem" --tls-auth-clients no \
    --save '' --appendonly no --daemonize no --loglevel warning >/dev/null &
REDIS_PID=$!
for _ in $(seq 200); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.025; done

"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create BenchPlain 1 1 >/dev/null
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create BenchTLS 1 1 >/dev/null

# redis_rate PORT TEST [--tls options...]: requests per second of one redis-benchmark run.
redis_rate() {
    local port=$1 test=$2; shift 2
    redis-benchmark -p "$port" "$@" -c $CONNS -P 1 -n "$TOTAL" -d 11 -t "$test" --csv 2>/dev/null \
        | awk -F'"' -v t="${test^^}" '$2 == t {print $4}'
}
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

PROBE_BEFORE=$(cpu_probe)
echo "== produce/consume, $CONNS connections, 11-byte bodies, $TOTAL messages per run, $ROUNDS rounds"
ROWS=()
for round in $(seq "$ROUNDS"); do
    C0=$(process_cpu "$ZBUS_PID")
    ZP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce BenchPlain $CONNS "$PER_CONN" 11 1 | zload_rate)
    C1=$(process_cpu "$ZBUS_PID")
    ZC=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume BenchPlain $CONNS "$PER_CONN" 11 1 | zload_rate)
    C2=$(process_cpu "$ZBUS_PID")
    ZTP=$("$ZLOAD_TLS" 127.0.0.1 "$ZBUS_TLS_PORT" produce BenchTLS $CONNS "$PER_CONN" 11 1 | zload_rate)
    C3=$(process_cpu "$ZBUS_PID")
    ZTC=$("$ZLOAD_TLS" 127.0.0.1 "$ZBUS_TLS_PORT" consume BenchTLS $CONNS "$PER_CONN" 11 1 | zload_rate)
    C4=$(process_cpu "$ZBUS_PID")
    R0=$(process_cpu "$REDIS_PID")
    RP=$(redis_rate "$REDIS_PORT" lpush)
    R1=$(process_cpu "$REDIS_PID")
    RC=$(redis_rate "$REDIS_PORT" rpop)
    R2=$(process_cpu "$REDIS_PID")
    RTP=$(redis_rate "$REDIS_TLS_PORT" lpush --tls --cacert "$WORK/ca.pem")
    R3=$(process_cpu "$REDIS_PID")
    RTC=$(redis_rate "$REDIS_TLS_PORT" rpop --tls --cacert "$WORK/ca.pem")
    R4=$(process_cpu "$REDIS_PID")
    ROWS+=("$(ratio "$ZTP" "$ZP") $(ratio "$ZTC" "$ZC") $(ratio "$RTP" "$RP") $(ratio "$RTC" "$RC") \
$(cpu_per_request "$C0" "$C1" $TOTAL) $(cpu_per_request "$C1" "$C2" $TOTAL) $(cpu_per_request "$C2" "$C3" $TOTAL) $(cpu_per_request "$C3" "$C4" $TOTAL) \
$(cpu_per_request "$R0" "$R1" $TOTAL) $(cpu_per_request "$R1" "$R2" $TOTAL) $(cpu_per_request "$R2" "$R3" $TOTAL) $(cpu_per_request "$R3" "$R4" $TOTAL)")
    echo "round $round: zbus produce $ZP/s, TLS $ZTP/s; consume $ZC/s, TLS $ZTC/s | redis LPUSH $RP/s, TLS $RTP/s; RPOP $RC/s, TLS $RTC/s"
done
python3 - "${ROWS[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, row.split())) for row in sys.argv[1:]]
m = [statistics.median(row[i] for row in rows) for i in range(12)]
lo = [min(row[i] for row in rows) for i in range(4)]
hi = [max(row[i] for row in rows) for i in range(4)]
print(f"TLS/plain, medians (range): zbus produce {m[0]:.2f} ({lo[0]:.2f}-{hi[0]:.2f}), consume {m[1]:.2f} ({lo[1]:.2f}-{hi[1]:.2f}); "
      f"redis LPUSH {m[2]:.2f} ({lo[2]:.2f}-{hi[2]:.2f}), RPOP {m[3]:.2f} ({lo[3]:.2f}-{hi[3]:.2f})")
print(f"server CPU per request, medians (user+system): zbus produce {m[4]:.1f} us, TLS {m[6]:.1f} us; consume {m[5]:.1f} us, TLS {m[7]:.1f} us; "
      f"redis LPUSH {m[8]:.1f} us, TLS {m[10]:.1f} us; RPOP {m[9]:.1f} us, TLS {m[11]:.1f} us")
PY
echo "cpu probe (fixed single-core work, lower is faster): ${PROBE_BEFORE} ms before, $(cpu_probe) ms after; compare runs only at similar values"
