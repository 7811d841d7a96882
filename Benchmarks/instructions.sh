#!/usr/bin/env bash
# Benchmark: the node's user-space instructions per request, counted by valgrind's callgrind: 16 zload connections,
# one request in flight each, 11-byte bodies, produce then consume. Unlike a rate or a CPU time, an instruction count
# does not depend on how busy this shared machine is, so two builds can be compared run against run (it leaves out
# what the kernel does for the node: system calls, the network stack).
#
# The count is taken in steady state: two measured loads of different sizes against the same running node, and the
# difference between their counts divided by the difference in requests (start-up, connection set-up and the warm-up
# drop out).
#
#   bash Benchmarks/instructions.sh [ZBUS_BINARY...]     # default: this checkout's release build
#   NODE_YAML_EXTRA='auth:\n  anonymous: { admin: ["*"] }\n' bash Benchmarks/instructions.sh NEW   # access control on
#
# Needs valgrind and gcc. A binary is measured from a copy without debug information (valgrind 3.19 cannot read the
# DWARF 5 that Swift toolchains write), so it must have the Swift runtime linked in (`--static-swift-stdlib`, how
# build_release builds): the toolchain's shared runtime libraries carry that debug information too. Runs about a
# minute per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
callgrind_workspace instructions

build_zload "$WORK/zload"
ZLOAD="$WORK/zload"
if [ $# -eq 0 ]; then
    build_release zbus
    set -- "$ZBUS"
fi
SMALL=${SMALL:-200}
LARGE=${LARGE:-1000}
CONNS=16


# measure OP: prints the instructions per request of OP in steady state, for the binary at $WORK/node.
measure() {
    local op=$1 run="$WORK/run"
    rm -rf "$run"; mkdir -p "$run"
    printf 'node:\n  log_level: warning\nmodules:\n  - module: mq\n    fsync: interval\n' > "$run/node.yaml"
    # NODE_YAML_EXTRA is added to the node file, e.g. an auth section: 'auth:\n  anonymous: { admin: ["*"] }\n'.
    printf '%b' "${NODE_YAML_EXTRA:-}" >> "$run/node.yaml"
    start_callgrind_node "$run"
    local port=$NODE_PORT
    "$ZLOAD" 127.0.0.1 "$port" create Q 1 1 >/dev/null
    "$ZLOAD" 127.0.0.1 "$port" produce Q $CONNS 200 11 1 >/dev/null   # warm-up
    [ "$op" = consume ] && "$ZLOAD" 127.0.0.1 "$port" produce Q $CONNS $((SMALL + LARGE)) 11 4 >/dev/null
    callgrind_control -z "$NODE_PID" >/dev/null 2>&1
    "$ZLOAD" 127.0.0.1 "$port" "$op" Q $CONNS "$SMALL" 11 1 >/dev/null
    callgrind_control --dump=small "$NODE_PID" >/dev/null 2>&1
    callgrind_control -z "$NODE_PID" >/dev/null 2>&1
    "$ZLOAD" 127.0.0.1 "$port" "$op" Q $CONNS "$LARGE" 11 1 >/dev/null
    callgrind_control --dump=large "$NODE_PID" >/dev/null 2>&1
    kill -INT "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=
    local small large
    small=$(callgrind_total "$run/callgrind.out.1")
    large=$(callgrind_total "$run/callgrind.out.2")
    echo $(( (large - small) / (CONNS * (LARGE - SMALL)) ))
}

echo "== node instructions per request (callgrind, steady state), $CONNS connections, one in flight, 11-byte bodies"
for binary in "$@"; do
    strip -g -o "$WORK/node" "$binary"
    echo "$binary: produce $(measure produce), consume $(measure consume)"
done
