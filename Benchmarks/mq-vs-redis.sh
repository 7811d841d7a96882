#!/usr/bin/env bash
# Benchmark: MQ produce and consume with zload against zbus, next to redis-benchmark LPUSH/RPOP against redis-server,
# same run, same concurrency (16 connections, 11-byte bodies), then pipelined produce (depth 32) and fsync: always
# with 64 producers against the disk's one-message-per-fsync rate.
#
#   bash Benchmarks/mq-vs-redis.sh [messages-per-connection]
#
# Needs: redis-server, redis-benchmark (apt-get install redis-server), gcc. Builds zbus in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
PER_CONN=${1:-20000}
CONNS=16
TOTAL=$((PER_CONN * CONNS))
WORK=$(mktemp -d /tmp/zbus-bench-mq.XXXXXX)
cleanup() { stop_zbus; [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

build_release zbus
build_zload "$WORK/zload"
ZLOAD="$WORK/zload"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize no --loglevel warning >/dev/null &
REDIS_PID=$!
sleep 0.5

ROUNDS=${ROUNDS:-3}
PROBE_BEFORE=$(cpu_probe)
echo "== produce/consume, $CONNS connections, 11-byte bodies, $TOTAL messages per run (fsync: interval), $ROUNDS rounds alternating"
start_zbus "$WORK" "fsync: interval"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create BenchQ 1 1 >/dev/null
PRODUCE_RATIOS=(); CONSUME_RATIOS=()
for round in $(seq "$ROUNDS"); do
    ZP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce BenchQ $CONNS "$PER_CONN" 11 1)
    ZC=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume BenchQ $CONNS "$PER_CONN" 11 1)
    RB=$(redis-benchmark -p "$REDIS_PORT" -c $CONNS -P 1 -n "$TOTAL" -d 11 -t lpush,rpop --csv 2>/dev/null)
    RL=$(echo "$RB" | awk -F'"' '$2 == "LPUSH" {print $4}')
    RR=$(echo "$RB" | awk -F'"' '$2 == "RPOP" {print $4}')
    ZPR=$(echo "$ZP" | zload_rate)
    ZCR=$(echo "$ZC" | zload_rate)
    PRODUCE_RATIOS+=("$(python3 -c "print(f'{$ZPR/$RL:.2f}')")")
    CONSUME_RATIOS+=("$(python3 -c "print(f'{$ZCR/$RR:.2f}')")")
    echo "round $round: zbus produce $ZPR/s consume $ZCR/s; redis LPUSH $RL/s RPOP $RR/s; ratios ${PRODUCE_RATIOS[-1]} ${CONSUME_RATIOS[-1]}"
done
python3 -c "import statistics,sys; a=sys.argv[1].split(); b=sys.argv[2].split(); print('median ratio produce/LPUSH', statistics.median(map(float,a)), ' consume/RPOP', statistics.median(map(float,b)))" "${PRODUCE_RATIOS[*]}" "${CONSUME_RATIOS[*]}"

echo "== pipelined produce, depth 32"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create BenchP 1 1 >/dev/null
ZPP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce BenchP $CONNS "$PER_CONN" 11 32)
echo "zbus  $ZPP"
stop_zbus

echo "== fsync: always, 64 producers"
rm -rf "$WORK/store"
start_zbus "$WORK" "fsync: always"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create SyncQ 1 1 >/dev/null
ZA=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce SyncQ 64 500 11 1)
echo "zbus  $ZA"
stop_zbus
# The disk's one-message-per-fsync rate: append 11 bytes + fdatasync, in a loop, for 2 seconds.
DISK=$(python3 - "$WORK" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n, start = 0, time.time()
while time.time() - start < 2:
    os.write(fd, b"x" * 11); os.fdatasync(fd); n += 1
print(f"{n / (time.time() - start):.0f}")
PY
)
echo "disk  one write+fdatasync per message: $DISK/s"
ZAR=$(echo "$ZA" | zload_rate)
python3 -c "print(f'fsync always, 64 producers: {$ZAR:.0f}/s = {$ZAR/$DISK:.1f}x the one-message-per-fsync rate')"
echo "cpu probe (fixed single-core work, lower is faster): ${PROBE_BEFORE} ms before, $(cpu_probe) ms after; compare runs only at similar values"
