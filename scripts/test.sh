#!/usr/bin/env bash
# Installs what weft needs, builds it and runs the whole test suite. Tests that need ../shared
# (real models, golden outputs) report SKIP when it is absent. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
# Open MPI too, so the MPI tests (suite mpi: mpirun on loopback) run; -Dmpi=auto finds it.
scripts/install-deps.sh mpi || exit 1
[ -f build/build.ninja ] || meson setup build || exit 1
rm -f build/meson-logs/testlog.json
meson test -C build --print-errorlogs --num-processes 2 "$@"
status=$?
python3 scripts/testlog_count.py build/meson-logs/testlog.json "$status"
exit $status
