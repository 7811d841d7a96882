#!/usr/bin/env bash
# Failover seen by an HA producer: a local cluster of two trackers and two brokers hosting the same MQ, one producer
# sending with acknowledgement, one message at a time, through the trackers. Each run SIGKILLs broker 1 mid-stream,
# restarts it on its store two seconds later, then drains the MQ from both brokers with an HA consumer.
#
#   Benchmarks/failover.sh [RUNS] [SECONDS]          (default: 6 runs of 8 s)
#
# Per run: gap = time from the SIGKILL to the next acknowledged produce; stall = the longest wait for an
# acknowledgement within 3 s after the SIGKILL; failed = produces that threw at the caller; lost = acknowledged
# messages the drain never got; dup = messages drained more than once (at-least-once: a produce whose broker died
# after storing it and before acknowledging it is stored again on the other broker).
# ZBUS=path/to/zbus (and zbus-failover-bench beside it) skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/common.sh

RUNS=${1:-6}
DURATION=${2:-8}
if [ -z "${ZBUS:-}" ]; then
    build_release zbus zbus-failover-bench
fi
BENCH=$(dirname "$ZBUS")/zbus-failover-bench
WORK=$(mktemp -d /tmp/zbus-failover.XXXXXX)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# start_node NAME PORT [TRACKERS]: a node with the tracker module (no TRACKERS) or the mq module reporting to TRACKERS.
start_node() {
    local name=$1 port=$2 trackers=${3:-}
    local dir="$WORK/$name"
    mkdir -p "$dir"
    {
        echo "node:"
        echo "  name: $name"
        echo "  log_level: warning"
        if [ -n "$trackers" ]; then
            echo "trackers: [$trackers]"
            echo "modules:"
            echo "  - module: mq"
        else
            echo "modules:"
            echo "  - module: tracker"
        fi
    } > "$dir/node.yaml"
    rm -f "$dir/ready"
    "$ZBUS" --config "$dir/node.yaml" --listen "127.0.0.1:$port" --store "$dir/store" --ready-file "$dir/ready" 2>>"$dir/log" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for _ in $(seq 500); do [ -f "$dir/ready" ] && return 0; sleep 0.01; done
    echo "$name did not start: $(tail -3 "$dir/log")" >&2
    exit 1
}

echo "run  gap_ms  stall_ms  failed  acked  lost  dup"
for run in $(seq "$RUNS"); do
    rm -rf "${WORK:?}"/*
    T1=$(free_port); T2=$(free_port); B1=$(free_port); B2=$(free_port)
    TRACKERS="127.0.0.1:$T1, 127.0.0.1:$T2"
    start_node tracker-1 "$T1"; start_node tracker-2 "$T2"
    start_node broker-1 "$B1" "$TRACKERS"; B1_PID=$LAST_PID
    start_node broker-2 "$B2" "$TRACKERS"
    for port in "$B1" "$B2"; do
        curl -s -o /dev/null -H 'cmd: create_mq' -H 'mq_name: Failover' -H 'mq_mode: 1' "http://127.0.0.1:$port/"
    done
    CLIENT="127.0.0.1:$T1;127.0.0.1:$T2"
    "$BENCH" "$CLIENT" produce Failover "$DURATION" > "$WORK/produce.txt" &
    PRODUCER=$!
    sleep 3
    KILL_NS=$(date +%s%N)
    kill -9 "$B1_PID"
    wait "$B1_PID" 2>/dev/null || true
    sleep 2
    start_node broker-1 "$B1" "$TRACKERS"
    wait "$PRODUCER"
    "$BENCH" "$CLIENT" drain Failover > "$WORK/drain.txt"
    python3 - "$KILL_NS" "$WORK/produce.txt" "$WORK/drain.txt" "$run" <<'PY'
import sys
kill = int(sys.argv[1])
acks, events, failed = set(), [], 0
for line in open(sys.argv[2]):
    kind, ns, rest = line.rstrip("\n").split(" ", 2)
    events.append(int(ns))
    if kind == "ack":
        acks.add(rest)
        events[-1] = (int(ns), True)
    else:
        failed += 1
        events[-1] = (int(ns), False)
after = [ns for ns, ok in events if ok and ns > kill]
gap = (after[0] - kill) / 1e6 if after else float("inf")
window = [kill] + [ns for ns, _ in events if kill < ns <= kill + 3_000_000_000]
stall = max((b - a for a, b in zip(window, window[1:])), default=0) / 1e6
got = [line.split(" ", 1)[1].strip() for line in open(sys.argv[3]) if line.startswith("got ")]
lost = len(acks - set(got))
dup = len(got) - len(set(got))
print(f"{sys.argv[4]:>3}  {gap:7.1f}  {stall:8.1f}  {failed:6d}  {len(acks):5d}  {lost:4d}  {dup:3d}")
PY
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
done
