#!/usr/bin/env bash
# Benchmark: the Swift client library (Producer.send with ack, Consumer.take) against zload, the C load generator, on
# the same release node in the same run: same MQ mode, 16 connections, one request in flight per connection, 11-byte
# bodies. The acceptance bar is a Swift rate of at least 80% of zload's.
#
# Consumer.take sends a `timeout` header (the node answers 204 instead of leaving a poll behind), and the node arms a
# timer for every consume that carries one, which zload's bare consumes never cost it. So consume is also measured
# against zload with that one header added to its consume request ("zload+timeout", same node work per message).
#
#   bash Benchmarks/client-vs-zload.sh [messages-per-connection]
#
# Needs gcc. Builds zbus and zbus-client-bench in release mode (scratch path $SCRATCH, default .build).
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
PER_CONN=${1:-20000}
CONNS=16
SCRATCH=${SCRATCH:-.build}
WORK=$(mktemp -d /tmp/zbus-bench-client.XXXXXX)
cleanup() { stop_zbus; rm -rf "$WORK"; }
trap cleanup EXIT

build_release zbus zbus-client-bench
BENCH=$BIN/zbus-client-bench
build_zload "$WORK/zload"
ZLOAD="$WORK/zload"
ZLOAD_SOURCE_FILE=${ZLOAD_SOURCE:-$(cd .. && pwd)/shared/tools/zload.c}
sed 's|cmd: consume\\r\\nmq: %s\\r\\n|cmd: consume\\r\\nmq: %s\\r\\ntimeout: 5000\\r\\n|' "$ZLOAD_SOURCE_FILE" > "$WORK/zload-timeout.c"
grep -q 'timeout: 5000' "$WORK/zload-timeout.c" || { echo "could not add the timeout header to zload" >&2; exit 1; }
gcc -O2 -pthread -o "$WORK/zload-timeout" "$WORK/zload-timeout.c"

start_zbus "$WORK" "fsync: interval"
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create ZloadQ 1 1 >/dev/null
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create SwiftQ 1 1 >/dev/null
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create TimeoutQ 1 1 >/dev/null
echo "== $CONNS connections, 11-byte bodies, $((PER_CONN * CONNS)) messages each way (fsync: interval)"
ZP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce ZloadQ $CONNS "$PER_CONN" 11 1)
SP=$("$BENCH" "127.0.0.1:$ZBUS_PORT" produce SwiftQ $CONNS "$PER_CONN" 11)
"$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce TimeoutQ $CONNS "$PER_CONN" 11 8 >/dev/null
ZC=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume ZloadQ $CONNS "$PER_CONN" 11 1)
SC=$("$BENCH" "127.0.0.1:$ZBUS_PORT" consume SwiftQ $CONNS "$PER_CONN" 11)
TC=$("$WORK/zload-timeout" 127.0.0.1 "$ZBUS_PORT" consume TimeoutQ $CONNS "$PER_CONN" 11 1)
echo "zload         $ZP"
echo "swift         $SP"
echo "zload         $ZC"
echo "swift         $SC"
echo "zload+timeout $TC"
ZPR=$(echo "$ZP" | zload_rate); SPR=$(echo "$SP" | zload_rate)
ZCR=$(echo "$ZC" | zload_rate); SCR=$(echo "$SC" | zload_rate); TCR=$(echo "$TC" | zload_rate)
python3 - "$ZPR" "$SPR" "$ZCR" "$SCR" "$TCR" <<'PY'
import sys
zp, sp, zc, sc, tc = map(float, sys.argv[1:])
for name, z, s in (("produce", zp, sp), ("consume", zc, sc), ("consume vs zload+timeout", tc, sc)):
    ratio = s / z
    print(f"{name}: swift/zload = {ratio:.2f} ({'meets' if ratio >= 0.8 else 'BELOW'} the 0.80 bar)")
PY
