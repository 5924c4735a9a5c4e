#!/usr/bin/env bash
# Installs the Debian 12 packages weft builds with. Idempotent: packages already
# present are skipped, and apt is only touched when something is missing.
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build
  libtbb-dev libhwloc-dev libeigen3-dev libxsimd-dev
  doctest-dev nlohmann-json3-dev libcli11-dev libbenchmark-dev
  python3 python3-numpy
)
# Optional extras: `scripts/install-deps.sh mpi` adds Open MPI; `fuzz` adds clang and its runtime
# libraries (libFuzzer, sanitizers) for scripts/fuzz.sh.
for extra in "$@"; do
  case "$extra" in
    mpi) packages+=(libopenmpi-dev openmpi-bin) ;;
    fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown extra '$extra' (known: mpi, fuzz)" >&2; exit 1 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
