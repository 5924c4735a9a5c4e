#!/usr/bin/env bash
# Builds weft with sanitizers and runs its tests there (issue 8).
#
#   scripts/sanitize.sh [asan|tsan|all] [extra meson test args...]
#     asan: the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#     tsan: the threaded tests under ThreadSanitizer (build-tsan/), with tests/tsan.supp
#     all:  both (the default)
#
# Builds are debugoptimized with assertions on, benchmarks off. Any sanitizer report fails the
# test it happens in (halt_on_error). Ends with one line per mode:
#   "sanitize asan+ubsan: N passed, N failed (N skipped)" -- worded so that it is not mistaken
# for the main suite's closing line when .ci/run prints both.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
shift || true
case "$mode" in asan|tsan|all) ;; *) echo "usage: scripts/sanitize.sh [asan|tsan|all] [meson test args]" >&2; exit 1 ;; esac
scripts/install-deps.sh >/dev/null || exit 1

# The tests that run threads: the parallel runtime; in-process ranks (Rank, RankGroup's driver
# threads and its atomic waits: topology) and the shared-memory communicator (comm, and the
# tensor-parallel primitives over it: tensor_parallel); the model at 1 and 2 threads, tensor-parallel
# (tp_model) and in pipeline stages with batched sequences (batch); the public API; and the CLI
# (which runs the weft binary, itself built with TSan, at -t 2; plan runs it with --tp 2).
# test_pipeline is left out: it checks PipelineState's bookkeeping on one thread (the stages'
# threads run in batch). tsan_canary (TSan builds only) checks that tests/tsan.supp still lets a
# race between ranks' steps through.
tsan_tests=(parallel topology comm tensor_parallel model tp_model batch public_api cli plan memory tsan_canary)
tsan_targets=(tests/test_parallel tests/test_topology tests/test_comm tests/test_tensor_parallel tests/test_model
              tests/test_tp_model tests/test_batch test_public_api tests/test_cli tests/test_plan tests/test_memory
              tests/test_tsan_canary tools/weft models/weft-make-model)

summaries=()
status=0
count() {  # prints "N passed, N failed (N skipped)" from a meson testlog.json
  python3 scripts/testlog_count.py "$1" "$2" --inline-skipped
}

run_mode() {  # name builddir sanitize-option [test names...]
  local name=$1 dir=$2 san=$3
  shift 3
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Db_sanitize="$san" -Db_lundef=false -Dbuildtype=debugoptimized -Db_ndebug=false \
      -Dbench=disabled >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; summaries+=("$name: setup failed"); status=1; return; }
  fi
  rm -f "$dir/meson-logs/testlog.json"
  local rc=0
  if [ $# -gt 0 ]; then
    # Only what the named tests run: `meson test` alone would build every target first. The build
    # files are regenerated first when a meson.build changed, or a new target would not be found.
    ninja -C "$dir" build.ninja >/dev/null && meson compile -C "$dir" "${tsan_targets[@]}" || rc=1
    [ $rc -ne 0 ] || meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 --timeout-multiplier 4 \
      "$@" "${extra[@]}" || rc=$?
  else
    meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 4 "${extra[@]}" || rc=$?
  fi
  [ $rc -eq 0 ] || status=1
  summaries+=("sanitize $name: $(count "$dir/meson-logs/testlog.json" $rc)")
}

extra=("$@")
if [ "$mode" = asan ] || [ "$mode" = all ]; then
  # detect_leaks: a leak is a finding too. meson sets halt_on_error/abort_on_error itself.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    run_mode asan+ubsan build-asan address,undefined
fi
if [ "$mode" = tsan ] || [ "$mode" = all ]; then
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$PWD/tests/tsan.supp} \
    run_mode tsan build-tsan thread "${tsan_tests[@]}"
fi
printf '%s\n' "${summaries[@]}"
exit $status
