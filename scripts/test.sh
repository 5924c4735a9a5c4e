#!/usr/bin/env bash
# Installs what weft needs, builds it and runs the whole test suite. Tests that need ../shared
# (real models, golden outputs) report SKIP when it is absent. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
[ -f build/build.ninja ] || meson setup build || exit 1
rm -f build/meson-logs/testlog.json
meson test -C build --print-errorlogs --num-processes 2 "$@"
status=$?
python3 - build/meson-logs/testlog.json "$status" <<'PY'
import json, sys
passed = failed = skipped = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"): passed += 1
    elif r == "SKIP": skipped += 1
    else: failed += 1
if int(sys.argv[2]) != 0 and failed == 0: failed = 1  # the build or the harness failed
if skipped: print(f"({skipped} skipped)")
print(f"{passed} passed, {failed} failed")
PY
exit $status
