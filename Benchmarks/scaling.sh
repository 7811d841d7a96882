#!/usr/bin/env bash
# Benchmark: how the MQ paths an anonymous client can drive grow with their size (issue 16, finding 6), counted by
# valgrind's callgrind in the node. Each scenario runs at size N and 2N against a fresh node; the ratio of the node's
# instructions over the measured phase shows linear work (about 2) or quadratic work (about 4, or more):
#
#   keys      N `add_key` in one group, then N `remove_key` (the key filter)
#   publish   N publishes to 2 subscribers that stopped asking (the pub/sub fan-out)
#   inflight  N connections each holding one message, then each acknowledging it (acknowledgement)
#   parked    N consumes parked with a one-hour `timeout`, the node then left idle for 2 s (expiry of wait limits:
#             the work should not grow with N at all)
#
#   bash Benchmarks/scaling.sh [ZBUS_BINARY...]     # default: this checkout's release build
#   N=5000 SCENARIOS="keys publish" bash Benchmarks/scaling.sh
#
# Measured 2026-12-02 (release builds, N=10000; the base before the fix at smaller N, as its quadratic paths are slow
# under valgrind):
#   after:  keys 2.02, publish 1.97, inflight 2.00, parked 1.00 (20,082 instructions in 2 s idle, at 1000 and 2000)
#   before: keys 3.93 (N=5000), publish 3.95 (N=2000), inflight 2.29 (23.8 M / 54.6 M at 1000/2000; after: 19.4 M / 38.7 M),
#           parked 1.22 (1.9 M and 2.4 M instructions in 2 s idle, at 200 and 400: the 20 ms sweeper)
#
# A scenario passes when 2N costs at most 2.4 times N (doubling at most doubles the work, within 20%). Needs valgrind,
# python3; binaries are measured from a copy without debug information, as in instructions.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. Benchmarks/common.sh
callgrind_workspace scaling

if [ $# -eq 0 ]; then
    build_release zbus
    set -- "$ZBUS"
fi
N=${N:-10000}
SCENARIOS=${SCENARIOS:-"keys publish inflight parked"}

# The load: runs one scenario against the node, zeroing callgrind's counters before the measured phase and dumping
# them after it.
cat > "$WORK/driver.py" <<'EOF'
import socket, subprocess, sys, time

port, pid, scenario, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def request(headers, body=b""):
    head = "GET / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
    def send(self, data): self.s.sendall(data)
    def receive(self):
        while b"\r\n\r\n" not in self.buf: self.fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length": length = int(value)
        while len(rest) < length:
            self.buf = head + b"\r\n\r\n" + rest; self.fill(); head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return int(head.split(b" ")[1]), rest[:length]
    def fill(self):
        data = self.s.recv(1 << 20)
        if not data: raise SystemExit("node closed the connection")
        self.buf += data

def zero(): subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
def dump(): subprocess.run(["callgrind_control", "--dump=measured", pid], check=True, capture_output=True)

def consumer_count(admin, mq):
    admin.send(request([("cmd", "query_mq"), ("mq", mq)]))
    import json
    return json.loads(admin.receive()[1])["consumerCount"]

admin = Conn()
mode = {"keys": 1, "publish": 2, "inflight": 4, "parked": 1}[scenario]
admin.send(request([("cmd", "create_mq"), ("mq_name", "Q"), ("mq_mode", str(mode))])); admin.receive()
if scenario == "keys":
    adds = b"".join(request([("cmd", "add_key"), ("mq", "Q"), ("key", f"key-{i}"), ("ack", "0")]) for i in range(n))
    removes = b"".join(request([("cmd", "remove_key"), ("mq", "Q"), ("key", f"key-{i}"), ("ack", "0")]) for i in range(n))
    zero()
    admin.send(adds); admin.send(removes)
    admin.send(request([("cmd", "remove_key"), ("mq", "Q")])); admin.receive()
    dump()
elif scenario == "publish":
    subscribers = [Conn() for _ in range(2)]
    for s in subscribers: s.send(request([("cmd", "consume"), ("mq", "Q"), ("topic", "*")]))
    while consumer_count(admin, "Q") < 2: pass
    publishes = b"".join(request([("cmd", "produce"), ("mq", "Q"), ("topic", "t"), ("ack", "0")], b"x") for i in range(n))
    zero()
    admin.send(publishes)
    admin.send(request([("cmd", "query_mq"), ("mq", "Q")])); admin.receive()
    dump()
elif scenario == "inflight":
    admin.send(b"".join(request([("cmd", "produce"), ("mq", "Q")], b"x") for i in range(n)))
    for _ in range(n): admin.receive()
    consumers = [Conn() for _ in range(n)]
    for c in consumers: c.send(request([("cmd", "consume"), ("mq", "Q")]))
    for c in consumers: assert c.receive()[0] == 200
    zero()
    # Each acknowledges what it holds; the queue is empty, so each then hears 204 at once.
    for c in consumers: c.send(request([("cmd", "consume"), ("mq", "Q"), ("timeout", "0")]))
    for c in consumers: assert c.receive()[0] == 204
    dump()
elif scenario == "parked":
    consumers = [Conn() for _ in range(n)]
    for c in consumers: c.send(request([("cmd", "consume"), ("mq", "Q"), ("timeout", "3600000")]))
    while consumer_count(admin, "Q") < n: pass
    zero()
    time.sleep(2)  # Idle: what the node does meanwhile is what parked wait limits cost.
    dump()
EOF


# measure SCENARIO SIZE: prints the node's instructions in the scenario's measured phase.
measure() {
    local scenario=$1 size=$2 run="$WORK/run"
    rm -rf "$run"; mkdir -p "$run"
    printf 'node:\n  log_level: warning\nmodules:\n  - module: mq\n    subscriber_buffer: 10000000\n' > "$run/node.yaml"
    start_callgrind_node "$run"
    python3 "$WORK/driver.py" "$NODE_PORT" "$NODE_PID" "$scenario" "$size"
    kill -INT "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=
    callgrind_total "$run/callgrind.out.1"
}

echo "== node instructions (callgrind) at size N and 2N, N=$N (inflight, parked: N/10 connections)"
status=0
for binary in "$@"; do
    strip -g -o "$WORK/node" "$binary"
    for scenario in $SCENARIOS; do
        size=$N
        case $scenario in inflight|parked) size=$((N / 10)) ;; esac
        one=$(measure "$scenario" "$size")
        two=$(measure "$scenario" $((2 * size)))
        ratio=$(awk -v a="$one" -v b="$two" 'BEGIN { printf "%.2f", b / a }')
        verdict=ok
        awk -v r="$ratio" 'BEGIN { exit !(r > 2.4) }' && { verdict="MORE THAN DOUBLED"; status=1; }
        echo "$binary: $scenario $size: $one, $((2 * size)): $two, ratio $ratio ($verdict)"
    done
done
exit $status
