#!/usr/bin/env python3
"""Counts the results in a meson testlog.json: prints "N passed, N failed" (plus the skipped count).

usage: testlog_count.py TESTLOG EXIT_STATUS [--inline-skipped]
A non-zero EXIT_STATUS with no failed test counts as one failure (the build or the harness failed).
By default the skipped count goes on a line of its own before the closing line; with
--inline-skipped it is appended to the same line: "N passed, N failed (N skipped)".
"""
import json
import sys

passed = failed = skipped = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    result = json.loads(line).get("result")
    if result in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif result == "SKIP":
        skipped += 1
    else:
        failed += 1
if int(sys.argv[2]) != 0 and failed == 0:
    failed = 1
if "--inline-skipped" in sys.argv[3:]:
    print(f"{passed} passed, {failed} failed ({skipped} skipped)")
else:
    if skipped:
        print(f"({skipped} skipped)")
    print(f"{passed} passed, {failed} failed")
