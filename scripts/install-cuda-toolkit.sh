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

# Linking: the wheels ship versioned libraries only, and no libcuda (that comes with the NVIDIA
# driver). Add the unversioned names, and a link-time stub of libcuda with the driver symbols
# cudarc declares (SONAME libcuda.so.1, so at run time the driver's own library is loaded: a
# `cuda` build runs only where the NVIDIA driver is installed).
LIB="$CU/lib"
for f in "$LIB"/libnvrtc.so.13 "$LIB"/libcublas.so.13 "$LIB"/libcublasLt.so.13 \
  "$LIB"/libcudart.so.13 "$LIB"/libcurand.so.10; do
  ln -sf "$(basename "$f")" "${f%.so.*}.so"
done
if [ ! -e "$LIB/libcuda.so" ]; then
  cargo fetch -q >&2
  CUDARC=$(grep -A1 '^name = "cudarc"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p' | head -n 1)
  SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$CUDARC"/src/driver/sys/mod.rs | head -n 1)
  grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$SYS" |
    sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u >"$DIR/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LIB/libcuda.so" "$DIR/libcuda-stub.c" >&2
fi
cat <<ENV
export PATH="$CU/bin:\$PATH"
export CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_HOME="$CU"
export LD_LIBRARY_PATH="$CU/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
