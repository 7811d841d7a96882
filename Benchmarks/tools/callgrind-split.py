#!/usr/bin/env python3
"""Splits a callgrind dump's instructions by who runs them, per call.

    callgrind-split.py CALLS FILE...

FILEs are dumps written with --compress-strings=no (function names in full). Each function's own instructions (not
those of what it calls) go to one part, by its name: SwiftNIO (NIO*, _NIO* modules), zbus (Zbus* modules), the Swift
runtime and standard library (swift_* entry points, the Swift module, generic code of the collections packages), and
the C library with everything else (malloc, memcpy, system call wrappers). Prints the parts per call, the calls to
swift_retain per call, and the total.

Then the same instructions charged to whose code asked for them: the runtime's, the standard library's and the C
library's own instructions (a retain, a release, a malloc, an array's growth) go to the zbus or SwiftNIO code that
called them, in proportion to what each caller's calls cost (through callers that are themselves runtime code, and
their callers in turn).

Last, the steps of a bus call: the instructions of the functions that do each step, callees included, found by
their demangled names (`swift demangle`, from the Swift toolchain). A step's functions called from another step are
counted in both (the dispatch to a worker is part of the MQ's batch after a produce, and of a consume that finds a
message waiting), and what no step names (socket reads and writes, the event loop, the worker and the legacy
client's bookkeeping) is in none, so the steps do not add up to the total.
"""
import collections
import re
import subprocess
import sys


def module(name):
    """The Swift module of a mangled name ($s<len><module>...), 'Swift' for the standard library, else None."""
    match = re.match(r"\$s(\d+)", name)
    if match:
        start = 2 + len(match.group(1))
        return name[start:start + int(match.group(1))]
    return "Swift" if name.startswith("$s") else None


def part(name):
    mod = module(name)
    if mod is None:
        if name.startswith(("swift_", "_swift", "swift::", "bool swift::", "void swift::")):
            return "Swift runtime and standard library"
        return "C library, other"
    if mod.startswith(("NIO", "_NIO")):
        return "SwiftNIO"
    if mod.startswith(("Zbus", "zbus", "CZbus")):
        return "zbus"
    return "Swift runtime and standard library"


# A bus call's steps: (what, the demangled names of the functions that do it, without their arguments).
STEPS = [
    ("the caller's request parsed", ["MessageParser.next"]),
    ("the MQ's produce", ["MQBroker.produce"]),
    ("the MQ's dispatch to a worker, its delivered copy", ["PointToPointDelivery.dispatch"]),
    ("the request encoded for the service", ["HTTPRequestEncoding.write"]),
    ("the service's response parsed", ["HTTPResponseParser.next"]),
    ("the worker's acknowledging consume", ["MQBroker.consume"]),
    ("the reply written to the caller's connection", ["HandlerTransport.flush"]),
]


def steps(calls, incoming):
    """Prints each step's instructions per call: what the calls into its functions cost, callees included, counting
    only calls from outside the step (a specialization calling another is not counted twice)."""
    names = sorted(incoming)
    try:
        demangled = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                                   capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        print("  (no `swift demangle`: steps left out)")
        return
    print("  steps of a call, callees included:")
    for label, patterns in STEPS:
        members = set()
        for name, readable in zip(names, demangled):
            # The function itself, not the closures, thunks and witnesses around it.
            bare = readable.split("(")[0].split("<")[0].removeprefix("specialized ")
            if any(bare.endswith(pattern) and not readable.startswith(("closure", "partial apply", "protocol witness"))
                   for pattern in patterns):
                members.add(name)
        cost = sum(c for member in members for caller, c in incoming[member].items() if caller not in members)
        print(f"    {label:52} {cost / calls:9,.0f}")


def main():
    calls = float(sys.argv[1])
    own = collections.Counter()
    by_function = collections.Counter()
    # incoming[callee][caller]: the instructions of the callee's calls from the caller, callees included.
    incoming = collections.defaultdict(collections.Counter)
    retains = 0
    for path in sys.argv[2:]:
        function = None
        callee = None
        in_call = False
        with open(path, errors="replace") as dump:
            for line in dump:
                if line.startswith("fn="):
                    function = line[3:].strip()
                    in_call = False
                elif line.startswith("cfn="):
                    callee = line[4:].strip()
                elif line.startswith("calls="):
                    in_call = True
                    if callee == "swift_retain":
                        retains += int(line[6:].split()[0])
                elif line[:1].isdigit() or line[:1] in "+-*":
                    fields = line.split()
                    if len(fields) >= 2:
                        if in_call:
                            incoming[callee][function] += int(fields[1])
                        else:
                            own[part(function)] += int(fields[1])
                            by_function[function] += int(fields[1])
                    in_call = False
    total = sum(own.values())
    for name, cost in own.most_common():
        print(f"    {name:36} {cost / calls:9,.0f}  {100 * cost / total:5.1f}%")
    print(f"    {'total':36} {total / calls:9,.0f}")
    print(f"    swift_retain calls per call: {retains / calls:.0f}")

    # Shares of each shared function's own instructions by the part that asked for them: a fixed point over the call
    # graph (a caller that is shared code passes on its own shares), a few rounds for the runtime's cycles.
    asked = ("zbus", "SwiftNIO")
    shares = {}
    for _ in range(8):
        for callee, callers in incoming.items():
            if part(callee) in asked:
                continue
            weights = collections.Counter()
            for caller, cost in callers.items():
                if part(caller) in asked:
                    weights[part(caller)] += cost
                elif caller in shares and caller != callee:
                    for name, share in shares[caller].items():
                        weights[name] += cost * share
            weight = sum(weights.values())
            if weight > 0:
                shares[callee] = {name: value / weight for name, value in weights.items()}
    charged = collections.Counter()
    for function, cost in by_function.items():
        if part(function) in asked:
            charged[part(function)] += cost
        elif function in shares:
            for name, share in shares[function].items():
                charged[name] += cost * share
        else:
            charged["not traced to a caller"] += cost
    print("  charged to the code that asked for them:")
    for name, cost in charged.most_common():
        print(f"    {name:36} {cost / calls:9,.0f}  {100 * cost / total:5.1f}%")
    steps(calls, incoming)


main()
