"""Writes the linker's symbol ordering file from a callgrind profile of the service.

Usage: order.py CALLGRIND_OUT BINARY > functions.txt

Lists every function of BINARY that ran during the profile, the most instructions first, so
that the linker lays them out together at the start of the code (docs/benchmarks.md, "Code
layout"). Functions that never ran are not listed and follow them.
"""

import collections
import re
import subprocess
import sys


def executed_functions(profile_path, binary_name):
    """Self instruction counts of the functions of `binary_name` in a callgrind profile."""
    costs = collections.Counter()
    in_binary = False
    function = None
    skip_next = False
    for line in open(profile_path, encoding="utf-8", errors="replace"):
        if skip_next:
            # The line after `calls=` is the inclusive cost of that call, not the caller's own.
            skip_next = False
            continue
        if line.startswith("ob="):
            in_binary = line[3:].strip().endswith("/" + binary_name)
        elif line.startswith("fn="):
            # `'2` and the like mark recursion levels, not other functions.
            function = re.sub(r"'\d+$", "", line[3:].strip()) if in_binary else None
        elif line.startswith("calls="):
            skip_next = True
        elif function and line[:1].isdigit():
            fields = line.split()
            if len(fields) >= 2:
                costs[function] += int(fields[1])
    return costs


def defined_functions(binary_path):
    """Names of the functions the binary's symbol table defines."""
    listing = subprocess.run(
        ["nm", "--defined-only", binary_path], capture_output=True, text=True, check=True
    ).stdout
    return {
        fields[2]
        for fields in (line.split() for line in listing.splitlines())
        if len(fields) == 3 and fields[1] in "tTwW"
    }


def main():
    profile_path, binary_path = sys.argv[1], sys.argv[2]
    costs = executed_functions(profile_path, binary_path.rsplit("/", 1)[-1])
    defined = defined_functions(binary_path)
    for name, _ in sorted(costs.items(), key=lambda item: (-item[1], item[0])):
        if name in defined:
            print(name)


main()
