"""The linker's list of the functions the service runs (docs/benchmarks.md, "Code layout").

Usage:
  layout.py order CALLGRIND_OUT BINARY > functions.txt
      Lists every function of BINARY that ran during the callgrind profile, the most
      instructions first, so that the linker lays them out together at the start of the code.
      Functions that never ran are not listed and follow them.
  layout.py check functions.txt BINARY
      Fails when fewer than 95 % of the listed functions are in BINARY: the list is stale
      (renamed functions are skipped by the linker) and record.sh must be run again.
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


def order(profile_path, binary_path):
    """Prints the functions of the binary that ran, the most instructions first."""
    costs = executed_functions(profile_path, binary_path.rsplit("/", 1)[-1])
    defined = defined_functions(binary_path)
    for name, _ in sorted(costs.items(), key=lambda item: (-item[1], item[0])):
        if name in defined:
            print(name)


def check(list_path, binary_path):
    """Exits with 1 when the list names too few of the binary's functions."""
    listed = [line.strip() for line in open(list_path, encoding="utf-8") if line.strip()]
    defined = defined_functions(binary_path)
    found = sum(1 for name in listed if name in defined)
    print(f"{found} of the {len(listed)} listed functions are in {binary_path}")
    if not listed or found < 0.95 * len(listed):
        print(
            "the code layout list is stale: run crates/cmp-server/code-layout/record.sh",
            file=sys.stderr,
        )
        sys.exit(1)


def main():
    command, first, binary_path = sys.argv[1:4]
    if command == "order":
        order(first, binary_path)
    elif command == "check":
        check(first, binary_path)
    else:
        sys.exit(f"unknown command {command}: order or check")


main()
