#!/usr/bin/env bash
# Benchmark: the Swift client library (Producer.send with ack, Consumer.take) against zload, the C load generator, on
# the same release node in the same run: same MQ mode, 16 connections, one request in flight per connection, 11-byte
# bodies. The acceptance bar is a Swift rate of at least 80% of zload's.
#
# Consumer.take sends a `timeout` header (the node answers 204 instead of leaving a poll behind), so consume is
# measured against zload with that one header added to its consume request ("zload+timeout", same request bytes).
# The Swift bench runs twice: with its tasks on Swift's global executor (the default), and pinned to the client's
# event loops through `MessageClient.taskExecutor` (the README's advice for hot loops), which saves two thread hops
# per request. Rounds alternate and the median ratio is reported: this machine's rates drift between runs.
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
for q in ZloadQ SwiftQ PinnedQ TimeoutQ; do "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" create $q 1 1 >/dev/null; done
ROUNDS=${ROUNDS:-3}
PROBE_BEFORE=$(cpu_probe)
echo "== $CONNS connections, 11-byte bodies, $((PER_CONN * CONNS)) messages per run (fsync: interval), $ROUNDS rounds alternating"
echo "   swift = tasks on Swift's global executor; pinned = tasks on the client's event loop (MessageClient.taskExecutor)"
RESULTS=()
for round in $(seq "$ROUNDS"); do
    ZP=$("$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce ZloadQ $CONNS "$PER_CONN" 11 1 | zload_rate)
    SP=$("$BENCH" "127.0.0.1:$ZBUS_PORT" produce SwiftQ $CONNS "$PER_CONN" 11 | zload_rate)
    PP=$("$BENCH" "127.0.0.1:$ZBUS_PORT" produce PinnedQ $CONNS "$PER_CONN" 11 pinned | zload_rate)
    "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce TimeoutQ $CONNS "$PER_CONN" 11 8 >/dev/null
    ZC=$("$WORK/zload-timeout" 127.0.0.1 "$ZBUS_PORT" consume TimeoutQ $CONNS "$PER_CONN" 11 1 | zload_rate)
    "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume ZloadQ $CONNS "$PER_CONN" 11 8 >/dev/null   # drain
    SC=$("$BENCH" "127.0.0.1:$ZBUS_PORT" consume SwiftQ $CONNS "$PER_CONN" 11 | zload_rate)
    PC=$("$BENCH" "127.0.0.1:$ZBUS_PORT" consume PinnedQ $CONNS "$PER_CONN" 11 pinned | zload_rate)
    echo "round $round: produce zload $ZP/s swift $SP/s pinned $PP/s; consume zload+timeout $ZC/s swift $SC/s pinned $PC/s"
    RESULTS+=("$ZP $SP $PP $ZC $SC $PC")
done
python3 - "${RESULTS[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in sys.argv[1:]]
def median_ratio(swift, zload):
    return statistics.median(row[swift] / row[zload] for row in rows)
for name, swift, zload in (("produce, swift", 1, 0), ("produce, pinned", 2, 0), ("consume, swift", 4, 3), ("consume, pinned", 5, 3)):
    ratio = median_ratio(swift, zload)
    print(f"{name}: median swift/zload = {ratio:.2f} ({'meets' if ratio >= 0.8 else 'BELOW'} the 0.80 bar)")
PY
echo "cpu probe (fixed single-core work, lower is faster): ${PROBE_BEFORE} ms before, $(cpu_probe) ms after; compare runs only at similar values"
