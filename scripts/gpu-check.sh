#!/usr/bin/env bash
# The GPU check, for one machine with a CUDA GPU (H100/H200 class), no network and a short
# time budget: runs a prebuilt `cuda` binary (scripts/build-gpu-binary.sh makes it here; carry
# target/gpu: the xz-compressed binary and the goldens) and writes everything under $OUT (default ./gpu-check-out):
#   env.txt          GPU, driver, libraries found
#   goldens-f32.txt  every golden on CUDA in f32, judged at the CPU tolerances
#   goldens-bf16.txt every golden on CUDA in bf16, each tensor's drift reported
#   dit.txt          the full-size DiT: one stage-1 and one refinement step (and that step
#                    with a rank-128 LoRA, unmerged and fused), TFLOP/s, peak GPU memory (nvidia-smi every 200 ms)
#   kernels.txt      `longcat gpu-check`: CUDA attention kernels (dense, BSA) against the f32
#                    reference on random inputs, then their times at the official shapes
#   job.txt          fal's default job on full-size random networks for 120 s: time per
#                    stage and step; job-memory.txt: peak GPU memory per stage
# A short table is printed last. Exit status: non-zero if any check failed.
#
#   scripts/gpu-check.sh [path/to/longcat]
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/gpu/longcat}"
OUT="${OUT:-$(pwd)/gpu-check-out}"
mkdir -p "$OUT"
status=0

# The CUDA libraries the binary links (cuBLAS, cuRAND, NVRTC): from the machine's own CUDA
# wheels (the PyTorch image ships them), else its toolkit.
LIBDIRS=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
dirs = set()
for root in roots:
    for pat in ("*/lib", "cu13/lib"):
        for d in glob.glob(os.path.join(root, pat)):
            if glob.glob(os.path.join(d, "lib*.so*")):
                dirs.add(d)
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${LIBDIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/local/cuda/lib64"

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$BIN" 2>&1 | grep -E 'cu|nvrtc|not found'
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then
  # Shipped compressed (scripts/build-gpu-binary.sh); python's lzma where xz is missing.
  if command -v xz >/dev/null; then
    xz -dkc "$BIN.xz" >"$BIN"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$BIN.xz" "$BIN"
  fi
  chmod +x "$BIN"
fi
if [ ! -x "$BIN" ]; then
  echo "no binary at $BIN: build it with scripts/build-gpu-binary.sh and carry target/gpu" >&2
  exit 2
fi

GOLDENS="${LONGCAT_GOLDENS:-target/gpu/goldens}"
[ -d "$GOLDENS" ] || GOLDENS=../shared/goldens
timeout 150 "$BIN" goldens check "$GOLDENS" --device cuda >"$OUT/goldens-f32.txt" 2>&1 || status=1
timeout 150 "$BIN" goldens check "$GOLDENS" --device cuda --dtype bf16 \
  >"$OUT/goldens-bf16.txt" 2>&1 || status=1
timeout 120 "$BIN" gpu-check --only attention,bsa --reps 10 >"$OUT/kernels.txt" 2>&1 || status=1

# Peak GPU memory of a command: nvidia-smi sampled every 200 ms (the driver's view: what the
# process holds, including allocator caches).
with_peak_memory() {
  local log="$1"
  shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$log" 2>/dev/null &
  local poll=$!
  "$@"
  local rc=$?
  kill "$poll" 2>/dev/null
  wait "$poll" 2>/dev/null
  echo "peak GPU memory: $(sort -n "$log" | tail -n 1) MiB"
  return $rc
}
with_peak_memory "$OUT/dit-memory.log" timeout 240 "$BIN" gpu-check --only dit \
  >"$OUT/dit.txt" 2>&1 || status=1

# The default job on full-size random networks, stopped after 120 s: time per stage and
# step, and peak GPU memory per stage (nvidia-smi samples with their times, assigned to the
# `STAGE ... at_ms` lines the binary prints).
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 200 \
  >"$OUT/job-memory.log" 2>/dev/null &
poll=$!
timeout 180 "$BIN" gpu-check --only job --job-seconds 120 >"$OUT/job.txt" 2>&1 || status=1
kill "$poll" 2>/dev/null
wait "$poll" 2>/dev/null
python3 - "$OUT/job.txt" "$OUT/job-memory.log" >"$OUT/job-memory.txt" 2>&1 <<'PY' || status=1
import sys, datetime
stages = []
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 6 and p[0] == "STAGE" and p[4] == "at_ms":
        stages.append((int(p[5]) / 1000.0, f"{p[1]} segment {p[3]}"))
peaks = {}
for line in open(sys.argv[2]):
    try:
        ts, mib = [x.strip() for x in line.split(",")]
        t = datetime.datetime.strptime(ts, "%Y/%m/%d %H:%M:%S.%f").timestamp()
    except ValueError:
        continue
    name = None
    for start, stage in stages:
        if start <= t:
            name = stage
    if name is not None:
        peaks[name] = max(peaks.get(name, 0), int(mib))
for _, stage in stages:
    if stage in peaks:
        print(f"PEAK {stage}: {peaks.pop(stage)} MiB")
PY

echo "== summary"
tail -n 1 "$OUT/goldens-f32.txt" "$OUT/goldens-bf16.txt"
grep -h '^FAIL' "$OUT/goldens-f32.txt" | head -n 20
grep -hE '^(PASS|FAIL|TIME|DiT|peak)|gpu-check:|error' "$OUT/kernels.txt" "$OUT/dit.txt"
grep -hE '^JOB|error' "$OUT/job.txt"
cat "$OUT/job-memory.txt"
exit $status
