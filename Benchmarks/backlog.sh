#!/usr/bin/env bash
# Backlog check (issue: backlog bounded by disk, not RAM): queue 2,000,000 messages of 100 B, report the node's RSS,
# restart it and time until it serves a consume again, then drain everything and count.
# Exits non-zero if RSS >= 100 MB, the restart takes 2 s or more, or a message is missing.
#
#   bash Benchmarks/backlog.sh [messages]
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
MESSAGES=${1:-2000000}
CONNS=16
PER_CONN=$((MESSAGES / CONNS))
WORK=$(mktemp -d /tmp/zbus-bench-backlog.XXXXXX)
cleanup() { stop_zbus; rm -rf "$WORK"; }
trap cleanup EXIT

build_release zbus
build_zload "$WORK/zload"
ZLOAD="$WORK/zload"

start_zbus "$WORK" "fsync: interval"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create Backlog 1 1 >/dev/null
echo "produce: $("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce Backlog $CONNS $PER_CONN 100 32)"
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$ZBUS_PID/status)
HWM_KB=$(awk '/VmHWM/ {print $2}' /proc/$ZBUS_PID/status)
echo "node RSS with $((PER_CONN * CONNS)) messages queued: $((RSS_KB / 1024)) MB (peak $((HWM_KB / 1024)) MB); store on disk: $(du -sh "$WORK/store" | cut -f1)"
stop_zbus

START=$(date +%s.%N)
start_zbus "$WORK" "fsync: interval"
FIRST=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume Backlog 1 1 100 1)
END=$(date +%s.%N)
RESTART=$(python3 -c "print(f'{$END - $START:.2f}')")
echo "restart until the first consume is served: ${RESTART} s ($FIRST)"
# The first consumer disconnected without acknowledging, so its message is delivered again: all are still queued.
DRAIN=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume Backlog $CONNS $PER_CONN 100 1)
echo "drain: $DRAIN"
RSS2_KB=$(awk '/VmHWM/ {print $2}' /proc/$ZBUS_PID/status)
echo "peak RSS after restart and drain: $((RSS2_KB / 1024)) MB"

FAIL=0
[ "$RSS_KB" -lt 102400 ] || { echo "FAIL: RSS ${RSS_KB} kB >= 100 MB"; FAIL=1; }
python3 -c "import sys; sys.exit(0 if $RESTART < 2 else 1)" || { echo "FAIL: restart took ${RESTART} s"; FAIL=1; }
echo "$DRAIN" | grep -q " fail=0 " || { echo "FAIL: drain had failures"; FAIL=1; }
exit $FAIL
