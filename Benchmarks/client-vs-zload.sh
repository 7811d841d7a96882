#!/usr/bin/env bash
# Benchmark: the Swift client library (Producer.send with ack, Consumer.take) against zload, the C load generator, on
# the same release node in the same run: same MQ mode, 16 connections, one request in flight per connection, 11-byte
# bodies. The acceptance bar is a Swift rate of at least 80% of zload's.
#
# Consumer.take sends a `timeout` header (the node answers 204 instead of leaving a poll behind), so consume is
# measured against zload with that one header added to its consume request ("zload+timeout", same request bytes).
# The Swift bench runs twice: with its tasks on Swift's global executor (the default), and pinned to the client's
# event loops through `MessageClient.taskExecutor` (the README's advice for hot loops), which saves two thread hops
# per request. Rounds alternate (ROUNDS, default 5) and the median ratio is reported: this machine's rates drift
# between runs. Each client's own CPU time per request is printed too (bash's `time` around each run).
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
ROUNDS=${ROUNDS:-5}
PROBE_BEFORE=$(cpu_probe)
echo "== $CONNS connections, 11-byte bodies, $((PER_CONN * CONNS)) messages per run (fsync: interval), $ROUNDS rounds alternating"
echo "   swift = tasks on Swift's global executor; pinned = tasks on the client's event loop (MessageClient.taskExecutor)"

# Runs a load generator; sets RATE (its rate) and CPU (its own CPU time, user + system, per request in microseconds).
# The CPU figure says what each client costs, whatever the scheduling of the shared cores did to the rates.
TIMEFORMAT='%U %S'
measure() {
    { time "$@" > "$WORK/out" 2> "$WORK/err"; } 2> "$WORK/time" || { cat "$WORK/out" "$WORK/err" >&2; return 1; }
    RATE=$(zload_rate < "$WORK/out")
    CPU=$(python3 -c "import sys; u, s = map(float, sys.argv[1:3]); print(f'{(u + s) * 1e6 / int(sys.argv[3]):.1f}')" \
        $(tail -1 "$WORK/time") $((PER_CONN * CONNS)))
}
RESULTS=()
for round in $(seq "$ROUNDS"); do
    measure "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce ZloadQ $CONNS "$PER_CONN" 11 1
    ZP=$RATE ZPC=$CPU
    measure "$BENCH" "127.0.0.1:$ZBUS_PORT" produce SwiftQ $CONNS "$PER_CONN" 11
    SP=$RATE SPC=$CPU
    measure "$BENCH" "127.0.0.1:$ZBUS_PORT" produce PinnedQ $CONNS "$PER_CONN" 11 pinned
    PP=$RATE PPC=$CPU
    "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" produce TimeoutQ $CONNS "$PER_CONN" 11 8 >/dev/null
    measure "$WORK/zload-timeout" 127.0.0.1 "$ZBUS_PORT" consume TimeoutQ $CONNS "$PER_CONN" 11 1
    ZC=$RATE ZCC=$CPU
    "$ZLOAD" 127.0.0.1 "$ZBUS_PORT" consume ZloadQ $CONNS "$PER_CONN" 11 8 >/dev/null   # drain
    measure "$BENCH" "127.0.0.1:$ZBUS_PORT" consume SwiftQ $CONNS "$PER_CONN" 11
    SC=$RATE SCC=$CPU
    measure "$BENCH" "127.0.0.1:$ZBUS_PORT" consume PinnedQ $CONNS "$PER_CONN" 11 pinned
    PC=$RATE PCC=$CPU
    echo "round $round: produce zload $ZP/s swift $SP/s pinned $PP/s; consume zload+timeout $ZC/s swift $SC/s pinned $PC/s"
    echo "         client CPU per request (us): produce zload $ZPC swift $SPC pinned $PPC; consume zload+timeout $ZCC swift $SCC pinned $PCC"
    RESULTS+=("$ZP $SP $PP $ZC $SC $PC $ZPC $SPC $PPC $ZCC $SCC $PCC")
done
python3 - "${RESULTS[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in sys.argv[1:]]
def median_ratio(swift, zload):
    return statistics.median(row[swift] / row[zload] for row in rows)
for name, swift, zload in (("produce, swift", 1, 0), ("produce, pinned", 2, 0), ("consume, swift", 4, 3), ("consume, pinned", 5, 3)):
    ratio = median_ratio(swift, zload)
    cpu = statistics.median(row[swift + 6] for row in rows)
    zload_cpu = statistics.median(row[zload + 6] for row in rows)
    print(f"{name}: median swift/zload = {ratio:.2f} ({'meets' if ratio >= 0.8 else 'BELOW'} the 0.80 bar); "
          f"client CPU per request {cpu:.1f} us against zload's {zload_cpu:.1f} us")
PY
echo "cpu probe (fixed single-core work, lower is faster): ${PROBE_BEFORE} ms before, $(cpu_probe) ms after; compare runs only at similar values"
