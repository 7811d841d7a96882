# Helpers shared by the benchmark scripts (sourced, not run).

# Prints a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Builds zload from ../shared/tools (or $ZLOAD_SOURCE) into $1.
build_zload() {
    local source=${ZLOAD_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/tools/zload.c}
    [ -f "$source" ] || source=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/tools/zload.c
    gcc -O2 -pthread -o "$1" "$source"
}

# Starts a release zbus node: start_zbus WORKDIR [extra module lines...]; sets ZBUS_PID and ZBUS_PORT.
start_zbus() {
    local work=$1; shift
    local config="$work/node.yaml"
    {
        echo "node:"
        echo "  log_level: warning"
        echo "modules:"
        echo "  - module: mq"
        for line in "$@"; do echo "    $line"; done
    } > "$config"
    rm -f "$work/ready"
    "$ZBUS" --config "$config" --listen 127.0.0.1:0 --store "$work/store" --ready-file "$work/ready" &
    ZBUS_PID=$!
    for _ in $(seq 400); do [ -f "$work/ready" ] && break; sleep 0.01; done
    ZBUS_PORT=$(cut -d: -f2 "$work/ready")
}

stop_zbus() { [ -n "${ZBUS_PID:-}" ] && kill "$ZBUS_PID" 2>/dev/null && wait "$ZBUS_PID" 2>/dev/null; ZBUS_PID=; }

# Extracts rate=N from a zload line.
zload_rate() { sed -n 's/.*rate=\([0-9.]*\).*/\1/p'; }

# Whether the toolchain can link the Swift runtime statically (`swift build --static-swift-stdlib`).
static_stdlib_available() {
    local swift_bin
    swift_bin=$(readlink -f "$(command -v swift)") || return 1
    [ -f "$(dirname "$(dirname "$swift_bin")")/lib/swift_static/linux/static-stdlib-args.lnk" ]
}

# Builds PRODUCTs in release mode (scratch path $SCRATCH, default .build); sets BIN (the products' folder) and ZBUS.
# This is the production build the README describes: the Swift runtime linked in (`--static-swift-stdlib`) when the
# toolchain has it, and the runtime's exclusivity checks left out (`-enforce-exclusivity=unchecked`).
# ZBUS_SHARED_STDLIB=1 builds against the shared runtime instead; ZBUS_EXCLUSIVITY_CHECKS=1 keeps the checks.
build_release() {
    local scratch=${SCRATCH:-.build}
    local flags=(-c release --scratch-path "$scratch")
    if [ -z "${ZBUS_SHARED_STDLIB:-}" ] && static_stdlib_available; then
        flags+=(--static-swift-stdlib)
        echo "release build: Swift runtime linked statically (--static-swift-stdlib)"
    else
        echo "release build: shared Swift runtime"
    fi
    if [ -z "${ZBUS_EXCLUSIVITY_CHECKS:-}" ]; then
        flags+=(-Xswiftc -enforce-exclusivity=unchecked)
        echo "release build: runtime exclusivity checks left out (-enforce-exclusivity=unchecked)"
    fi
    BIN=$(swift build "${flags[@]}" --show-bin-path)
    # The project's own modules are compiled afresh every time (about a minute; the dependencies stay built): after a
    # change to the stored properties of `Message`, an incremental release build was seen to link objects compiled
    # against the old layout, and the node crashed on its first acknowledgement.
    if [ -d "$BIN" ]; then
        find "$BIN" -maxdepth 1 -type d \( -name 'Zbus*.build' -o -name 'CZbus*.build' -o -name 'zbus*.build' \) \
            -exec find {} -name '*.o' -delete \;
        rm -rf "$BIN"/Modules/Zbus* "$BIN"/Modules/CZbus*
    fi
    for product in "$@"; do swift build "${flags[@]}" --product "$product" >/dev/null; done
    ZBUS=$BIN/zbus
}

# Prints the CPU time (user + system, in clock ticks) a process has used so far: process_cpu PID.
process_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Prints the CPU microseconds per request between two process_cpu readings: cpu_per_request BEFORE AFTER REQUESTS.
cpu_per_request() { python3 -c "import os,sys; b,a,n=map(float,sys.argv[1:]); print(f'{(a-b)*1e6/os.sysconf(\"SC_CLK_TCK\")/n:.1f}')" "$1" "$2" "$3"; }

# Prints the time (ms) of a fixed piece of pure CPU work on one core, the best of three: a shared or throttled machine
# shows it in this figure first, so runs are compared only when it is about the same.
cpu_probe() {
    python3 -c 'import time
best = 1e9
for _ in range(3):
    t = time.perf_counter(); sum(range(10_000_000)); best = min(best, time.perf_counter() - t)
print(f"{best * 1000:.0f}")'
}

# For the callgrind scripts: checks for valgrind, makes $WORK (removed at exit) and kills the node in $NODE_PID at
# exit. NAME names the folder.
callgrind_workspace() {
    command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
    WORK=$(mktemp -d "/tmp/zbus-bench-$1.XXXXXX")
    NODE_PID=
    trap 'if [ -n "$NODE_PID" ]; then kill "$NODE_PID" 2>/dev/null; fi; rm -rf "$WORK"' EXIT
}

# start_callgrind_node RUN: starts $WORK/node (a copy without debug information) under callgrind with RUN/node.yaml,
# its store and ready file in RUN, and waits until it accepts connections; sets NODE_PID and NODE_PORT. Hashing is
# made deterministic: with the usual per-process seed, how many keys a dictionary lookup compares changes from run
# to run, and with it the count by a hundred or two.
start_callgrind_node() {
    local run=$1
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$run/callgrind.out" "$WORK/node" \
        --config "$run/node.yaml" --listen 127.0.0.1:0 --store "$run/store" --ready-file "$run/ready" >/dev/null 2>&1 &
    NODE_PID=$!
    for _ in $(seq 600); do [ -f "$run/ready" ] && break; sleep 0.1; done
    [ -f "$run/ready" ] || { echo "the node did not start under valgrind" >&2; exit 1; }
    NODE_PORT=$(cut -d: -f2 "$run/ready")
}

# callgrind_total FILE...: the instructions of a callgrind dump (the sum of its files' `summary:` lines).
callgrind_total() { grep -h "^summary:" "$@" | awk '{ sum += $2 } END { printf "%.0f\n", sum }'; }
