#!/usr/bin/env bash
# Builds weft's libFuzzer targets (clang, ASan + UBSan, -Dfuzz=enabled in build-fuzz/) and runs
# each one. Seed corpora are generated into build-fuzz/fuzz-corpus/ from small synthetic files and
# from ../shared/models when it exists (tests/fuzz/make_seeds.py); the corpora grow there between
# runs and are never committed.
#
#   scripts/fuzz.sh [BUDGET] [TARGET...]
#     BUDGET: SECONDS per target (default 60), or runs=N to run each target for N executions.
#     TARGET: safetensors config sentencepiece tokenizer_bin llama2c encode gguf (default: all).
#
# Fuzzing runs niced, in slices of at most 60 s; between slices it waits while /tmp/weft-bench-lock
# exists (someone is timing benchmarks on this machine). A crash stops that target: the input is
# saved as build-fuzz/fuzz-artifacts/<target>/crash-* and the script exits 1 at the end.
# Prints one line per target: executions, corpus size, findings.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=build-fuzz
budget=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config sentencepiece tokenizer_bin llama2c encode gguf)
lock=/tmp/weft-bench-lock
wait_for_lock() { while [ -e "$lock" ]; do sleep 20; done; }

scripts/install-deps.sh fuzz || exit 1
wait_for_lock
if [ ! -f $build/build.ninja ]; then
  CC=clang CXX=clang++ meson setup $build -Dfuzz=enabled -Dtests=disabled -Dbench=disabled \
    -Dbuildtype=debugoptimized -Db_ndebug=false -Db_sanitize=address,undefined -Db_lundef=false || exit 1
fi
nice -n 19 meson compile -C $build "${targets[@]/#/fuzz_}" || exit 1

models=$root/../shared/models
[ -d "$models" ] || models=
python3 tests/fuzz/make_seeds.py $build/fuzz-seeds $models || exit 1

declare -A max_len=([safetensors]=8192 [config]=4096 [sentencepiece]=16384 [tokenizer_bin]=8192
                    [llama2c]=4096 [encode]=2048 [gguf]=16384)
declare -A dict=([safetensors]=tests/fuzz/json.dict [config]=tests/fuzz/json.dict)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
[ -n "$models" ] && export WEFT_FUZZ_MODELS=$models

status=0
summary=()
for t in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$t
  artifacts=$build/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -n $build/fuzz-seeds/$t/* "$corpus"/ 2>/dev/null
  log=$build/fuzz-logs/$t.log
  mkdir -p "$(dirname "$log")"
  : >"$log"
  runs=0 seconds=0 finding=none
  while :; do
    if [[ $budget == runs=* ]]; then
      [ $runs -lt ${budget#runs=} ] || break
      slice=60
    else
      [ $seconds -lt $budget ] || break
      slice=$(( budget - seconds < 60 ? budget - seconds : 60 ))
    fi
    wait_for_lock
    args=(-max_total_time=$slice -max_len=${max_len[$t]} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=$artifacts/)
    [ -n "${dict[$t]:-}" ] && args+=(-dict=${dict[$t]})
    [[ $budget == runs=* ]] && args+=(-runs=$(( ${budget#runs=} - runs )))
    start=$SECONDS
    nice -n 19 $build/tests/fuzz/fuzz_$t "${args[@]}" "$corpus" >"$log.slice" 2>&1
    rc=$?
    cat "$log.slice" >>"$log"
    seconds=$(( seconds + SECONDS - start ))
    n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log.slice" | tail -1 | grep -o '[0-9]*$')
    runs=$(( runs + ${n:-0} ))
    if [ $rc -ne 0 ]; then
      finding=$(ls -t "$artifacts" | head -1)
      status=1
      break
    fi
  done
  line=$(printf '%-14s %10d executions %6d s  corpus %5d files  finding: %s' "$t" "$runs" "$seconds" \
    "$(ls "$corpus" | wc -l)" "$finding")
  echo "fuzz: $line"
  summary+=("$line")
done
echo "fuzz summary (logs in $build/fuzz-logs/):"
printf '  %s\n' "${summary[@]}"
exit $status
