#!/usr/bin/env bash
# Builds the `cuda` release binary that scripts/gpu-check.sh runs on a GPU machine, here (no
# GPU needed): installs the CUDA 13.0 toolkit wheels if missing (scripts/install-cuda-toolkit.sh),
# builds `longcat` with `--features cuda` for CUDA_COMPUTE_CAP (default 90: H100/H200), strips
# it and places it xz-compressed at target/gpu/longcat.xz with a copy of the goldens in
# target/gpu/goldens (ignored by git; carry target/gpu to the GPU machine: about 23 MB).
#
#   scripts/build-gpu-binary.sh            # toolkit in ./.cuda, binary in target/gpu/longcat
#   CUDA_TOOLKIT_DIR=/opt/cuda-wheels scripts/build-gpu-binary.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLKIT="${CUDA_TOOLKIT_DIR:-$(pwd)/.cuda}"
eval "$(scripts/install-cuda-toolkit.sh "$TOOLKIT")"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p longcat-cli --features cuda
mkdir -p target/gpu
cp "$TARGET_DIR/release/longcat" target/gpu/longcat
strip target/gpu/longcat
# The stripped binary is about 80 MB (candle's embedded PTX), over what one carry holds (64 MiB
# with the goldens): ship it xz-compressed (about 12 MB); gpu-check.sh unpacks it.
# The ldd listing below reads the uncompressed file first.
ldd target/gpu/longcat | grep -E 'cu|nvrtc' || true
xz -T0 -6 -f target/gpu/longcat
ls -l target/gpu/longcat.xz
# The goldens travel with it (11 MB): the GPU machine sees only the carried paths.
GOLDENS="${LONGCAT_GOLDENS:-../shared/goldens}"
if [ -d "$GOLDENS" ]; then
  rm -rf target/gpu/goldens
  cp -r "$GOLDENS" target/gpu/goldens
fi
du -sh target/gpu
