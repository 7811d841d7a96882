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
"""
import collections
import re
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


main()
