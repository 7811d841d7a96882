#!/usr/bin/env bash
# Benchmark: MQ produce and consume with zload against zbus, next to redis-benchmark LPUSH/RPOP against redis-server,
# same run, same concurrency (16 connections, 11-byte bodies), then pipelined produce (depth 32) and fsync: always
# with 64 producers against the disk's one-message-per-fsync rate and against the same load under fsync: interval
# (what the CPU allows without waiting for the disk). Besides the rates it prints each server's CPU time
# per request (user + system, read from /proc around each run): the load generators take their share of the same two
# cores, so this figure says what the server itself costs.
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

ROUNDS=${ROUNDS:-5}
PROBE_BEFORE=$(cpu_probe)
echo "== produce/consume, $CONNS connections, 11-byte bodies, $TOTAL messages per run (fsync: interval), $ROUNDS rounds alternating"
start_zbus "$WORK" "fsync: interval"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create BenchQ 1 1 >/dev/null
PRODUCE_RATIOS=(); CONSUME_RATIOS=(); CPU_ROWS=()
for round in $(seq "$ROUNDS"); do
    # Each server's CPU time (user + system) is read around each run: CPU per request is steadier than a rate on a
    # shared machine, and it tells the server's cost from the load generator's (both share the cores).
    C0=$(process_cpu "$ZBUS_PID")
    ZP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce BenchQ $CONNS "$PER_CONN" 11 1)
    C1=$(process_cpu "$ZBUS_PID")
    ZC=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume BenchQ $CONNS "$PER_CONN" 11 1)
    C2=$(process_cpu "$ZBUS_PID")
    R0=$(process_cpu "$REDIS_PID")
    RL=$(redis-benchmark -p "$REDIS_PORT" -c $CONNS -P 1 -n "$TOTAL" -d 11 -t lpush --csv 2>/dev/null | awk -F'"' '$2 == "LPUSH" {print $4}')
    R1=$(process_cpu "$REDIS_PID")
    RR=$(redis-benchmark -p "$REDIS_PORT" -c $CONNS -P 1 -n "$TOTAL" -d 11 -t rpop --csv 2>/dev/null | awk -F'"' '$2 == "RPOP" {print $4}')
    R2=$(process_cpu "$REDIS_PID")
    ZPR=$(echo "$ZP" | zload_rate)
    ZCR=$(echo "$ZC" | zload_rate)
    PRODUCE_RATIOS+=("$(python3 -c "print(f'{$ZPR/$RL:.2f}')")")
    CONSUME_RATIOS+=("$(python3 -c "print(f'{$ZCR/$RR:.2f}')")")
    CPU_ROWS+=("$(cpu_per_request "$C0" "$C1" $TOTAL) $(cpu_per_request "$C1" "$C2" $TOTAL) $(cpu_per_request "$R0" "$R1" $TOTAL) $(cpu_per_request "$R1" "$R2" $TOTAL)")
    echo "round $round: zbus produce $ZPR/s consume $ZCR/s; redis LPUSH $RL/s RPOP $RR/s; ratios ${PRODUCE_RATIOS[-1]} ${CONSUME_RATIOS[-1]}"
done
python3 -c "import statistics,sys; a=sys.argv[1].split(); b=sys.argv[2].split(); print('median ratio produce/LPUSH', statistics.median(map(float,a)), ' consume/RPOP', statistics.median(map(float,b)))" "${PRODUCE_RATIOS[*]}" "${CONSUME_RATIOS[*]}"
python3 - "${CPU_ROWS[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, row.split())) for row in sys.argv[1:]]
zp, zc, rl, rr = (statistics.median(row[i] for row in rows) for i in range(4))
print(f"server CPU per request (median, user+system): zbus produce {zp:.1f} us, consume {zc:.1f} us; "
      f"redis LPUSH {rl:.1f} us, RPOP {rr:.1f} us")
PY

echo "== pipelined produce, depth 32"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create BenchP 1 1 >/dev/null
PIPELINED=()
for round in $(seq "$ROUNDS"); do
    ZPP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce BenchP $CONNS "$PER_CONN" 11 32)
    echo "zbus  $ZPP"
    PIPELINED+=("$(echo "$ZPP" | zload_rate)")
done
python3 -c "import statistics,sys; print(f'median pipelined produce: {statistics.median(map(float, sys.argv[1:])):.0f}/s')" "${PIPELINED[@]}"
stop_zbus

echo "== fsync: always, 64 producers, next to the same load under fsync: interval (no waiting for the disk)"
# The interval runs give the ceiling this machine's CPU sets for 64 producers with one message in flight each: group
# commit can at best reach it.
ALWAYS=(); INTERVAL=()
for round in $(seq 3); do
    for policy in always interval; do
        rm -rf "$WORK/store"
        start_zbus "$WORK" "fsync: $policy"
        "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create SyncQ 1 1 >/dev/null
        ZA=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce SyncQ 64 1000 11 1)
        echo "zbus  fsync: $policy  $ZA"
        stop_zbus
        if [ "$policy" = always ]; then ALWAYS+=("$(echo "$ZA" | zload_rate)"); else INTERVAL+=("$(echo "$ZA" | zload_rate)"); fi
    done
done
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
python3 - "$DISK" "${ALWAYS[*]}" "${INTERVAL[*]}" <<'PY'
import statistics, sys
disk = float(sys.argv[1])
always = statistics.median(map(float, sys.argv[2].split()))
interval = statistics.median(map(float, sys.argv[3].split()))
print(f"fsync always, 64 producers: median {always:.0f}/s = {always / disk:.1f}x the one-message-per-fsync rate")
print(f"same load, fsync: interval: median {interval:.0f}/s = {interval / disk:.1f}x (the CPU's ceiling); always reaches {always / interval:.0%} of it")
PY
echo "cpu probe (fixed single-core work, lower is faster): ${PROBE_BEFORE} ms before, $(cpu_probe) ms after; compare runs only at similar values"
