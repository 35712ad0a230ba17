#!/usr/bin/env bash
# The main job from a fresh clone: install and build (.ci/install), then run the
# benchmark with any arguments given (see: python -m rnnkernels.benchmark --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
python -m rnnkernels.benchmark "$@"
