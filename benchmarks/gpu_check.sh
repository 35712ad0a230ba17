#!/usr/bin/env bash
# The GPU check, for the lent GPU machine (offline; torch with CUDA already installed):
# builds the extension for this GPU, runs the CUDA tests, then the GPU benchmark, writing
# every log and JSON to $OUT. Meant to finish in under 8 minutes on an H200.
#   OUT=/some/folder bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out/gpu}"
mkdir -p "$OUT"
export MAX_JOBS="${MAX_JOBS:-16}" RNNKERNELS_STRICT_BUILD=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"  # the CI compiles the full list

{
  date -u
  nvidia-smi
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())"
} > "$OUT/environment.txt" 2>&1

echo "== build"
if ! timeout 300 python -m pip install --no-index --no-deps --no-build-isolation -v -e . \
    > "$OUT/build.log" 2>&1; then
  tail -n 60 "$OUT/build.log"
  echo "build failed: see $OUT/build.log"
  exit 1
fi
python -c "import json, torch, rnnkernels; print(json.dumps(rnnkernels.backend_info()))" \
  | tee "$OUT/backend_info.json"

echo "== CUDA tests"
timeout 200 python -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  --junitxml="$OUT/cuda-tests.xml" > "$OUT/cuda-tests.log" 2>&1
echo "cuda tests exit code $?"
tail -n 5 "$OUT/cuda-tests.log"

echo "== GPU benchmark"
timeout 200 python -m rnnkernels.benchmark --devices cuda --impls nn nn-nocudnn cuda \
  --dtypes float32 bfloat16 --modes fwd train --repeats 20 --budget 1.5 \
  --shape 100,64,512,512 --shape 1024,16,768,768 --shape 100,1,64,64 \
  --out-dir "$OUT" --name gpu-benchmark > "$OUT/benchmark.log" 2>&1
echo "benchmark exit code $?"
tail -n 40 "$OUT/benchmark.log"
