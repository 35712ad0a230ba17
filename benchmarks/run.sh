#!/usr/bin/env bash
# The main job from a fresh clone: install and build (.ci/install) unless the kernels built
# here are current (same sources, same torch: rnnkernels/_build_stamp.py), then run the
# benchmark with any arguments given (see: python -m rnnkernels.benchmark --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if python -m rnnkernels._build_stamp 2>/dev/null; then
  echo "rnnkernels: the kernels built here are current; no rebuild"
else
  bash .ci/install
fi
python -m rnnkernels.benchmark "$@"
