#!/usr/bin/env bash
# Installs what weft needs, builds it, writes the built-in default model (random weights) and
# generates text with it. Usage: scripts/demo.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build
[ -f build/default-model/model.safetensors ] || ./build/models/weft-make-model --preset default -o build/default-model
./build/tools/weft generate -m build/default-model -p "${1:-Once upon a time}" -n 64 --temp 0.8 --seed 42
