#!/usr/bin/env bash
# Installs the CUDA 13.0 toolchain a `cuda` build of longcat needs (nvcc, nvvm, headers, and
# the cuBLAS/cuRAND/NVRTC libraries) from NVIDIA's PyPI wheels into a virtual environment, and
# prints the environment to build and run with. Building needs no GPU and no driver.
#
#   eval "$(scripts/install-cuda-toolkit.sh)"        # toolkit in ./.cuda
#   cargo build --release -p longcat-cli --features cuda
#   target/release/longcat serve --weights /models/LongCat-Video   # --device auto picks the GPU
#
# Every package is pinned to CUDA 13.0: mixing minor versions (pip's default for the
# dependencies of nvcc) gives a PTX assembler older than the compiler ("Unsupported .version").
# CUDA_COMPUTE_CAP defaults to 90 (H100/H200); set it before running for other GPUs.
set -euo pipefail
DIR="${1:-$(pwd)/.cuda}"
{
  if [ ! -x "$DIR/bin/pip" ]; then
    python3 -m venv "$DIR"
  fi
  "$DIR/bin/pip" install -q \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-nvrtc==13.0.*" \
    "nvidia-cublas==13.0.*" "nvidia-curand==10.*"
} >&2
CU=$("$DIR/bin/python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
"$CU/bin/nvcc" --version >&2
cat <<ENV
export PATH="$CU/bin:\$PATH"
export CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_HOME="$CU"
export LD_LIBRARY_PATH="$CU/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
