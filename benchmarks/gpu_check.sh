#!/usr/bin/env bash
# The GPU check, for the lent GPU machine (offline; torch with CUDA already installed):
# builds the extension for sm_90, stops at once unless backend_info() shows the cuda
# backend available, runs every CUDA test, then the GPU benchmark, writing every log and
# JSON to $OUT. Its time limits (180 + 160 + 120 s) keep it under 8 minutes.
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#   RNNKERNELS_GPU_CHECK_BUILT=1: the extension is built already (a rerun): no build.
# Every step runs under a time limit that sends SIGINT first, as Ctrl-C would: pytest and
# the benchmark then still write what they have (pytest's report, the benchmark's JSON,
# written after each case), and KILL follows 20 s later.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out/gpu}"
mkdir -p "$OUT"
export MAX_JOBS="${MAX_JOBS:-16}" RNNKERNELS_STRICT_BUILD=1 RNNKERNELS_CUDA=1 PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"  # the CI compiles the full list
limit() { local seconds=$1; shift; timeout -s INT -k 20 "$seconds" "$@"; }
started=$SECONDS

{
  date -u
  nvidia-smi
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), 'gpu', \
torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} > "$OUT/environment.txt" 2>&1

if [ "${RNNKERNELS_GPU_CHECK_BUILT:-0}" != 1 ]; then
  echo "== build (sm_${TORCH_CUDA_ARCH_LIST//./})"
  if ! limit 180 python -m pip install --no-index --no-deps --no-build-isolation -v -e . \
      > "$OUT/build.log" 2>&1; then
    tail -n 60 "$OUT/build.log"
    echo "build failed: see $OUT/build.log"
    exit 1
  fi
fi

echo "== backend"
if ! python - "$OUT/backend_info.json" <<'PY'
import json
import sys

import rnnkernels

info = rnnkernels.backend_info()
with open(sys.argv[1], "w") as out:
    json.dump(info, out, indent=1)
print(json.dumps(info))
if not info["available"]["cuda"]:
    print("the cuda backend is not available:", info["unavailable_reasons"].get("cuda"))
    sys.exit(1)
PY
then
  echo "stopping: no CUDA kernels to test"
  exit 1
fi

echo "== CUDA tests"
limit 160 python -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  --junitxml="$OUT/cuda-tests.xml" > "$OUT/cuda-tests.log" 2>&1
echo "cuda tests exit code $?"
tail -n 15 "$OUT/cuda-tests.log"

echo "== GPU benchmark"
# float32 parity with TF32 off on both sides (our GEMMs and cuDNN); nn is also timed with
# cuDNN's TF32 on (its default), and the JSON records the flags. A disagreement with nn is
# recorded in the JSON, not fatal.
limit 120 python -m rnnkernels.benchmark --devices cuda --impls nn nn-tf32 nn-nocudnn cuda cuda-steps \
  --dtypes float32 bfloat16 --modes fwd train --tf32 off --on-mismatch record \
  --repeats 20 --budget 1.0 \
  --shape 100,64,512,512 --shape 1024,16,768,768 --shape 100,1,64,64 --shape 100,32,256,256 \
  --out-dir "$OUT" --name gpu-benchmark > "$OUT/benchmark.log" 2>&1
echo "benchmark exit code $?"
tail -n 40 "$OUT/benchmark.log"
echo "== done in $((SECONDS - started)) s"
