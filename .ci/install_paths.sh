#!/usr/bin/env bash
# The ways a user installs rnnkernels, each in a fresh venv with this Python's own pip
# (23.2.1 here) plus `wheel` (with which old pips took the legacy `setup.py develop` path):
#   - an isolated build (plain `pip install -e .`) stops and says to install torch first;
#   - `--no-build-isolation`, editable and regular, builds and loads the kernels;
#   - RNNKERNELS_PYTHON_ONLY=1 installs the Python backend alone, as asked.
# The venvs see this Python's packages (its torch) through a path entry, which loads none
# of its .pth files (so not the editable rnnkernels .ci/install leaves there).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MAX_JOBS="${MAX_JOBS:-2}" RNNKERNELS_CUDA=0 PIP_DISABLE_PIP_VERSION_CHECK=1

# A venv at $work/NAME, and the committed sources in $work/NAME/src (each install its own
# copy: a build folder left by another install would be packaged again).
fresh_venv() {
  python -m venv "$work/$1"
  python -c 'import site; print(site.getsitepackages()[0])' \
    >"$("$work/$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/host_packages.pth"
  "$work/$1/bin/python" -m pip install --quiet wheel
  git archive --format=tar HEAD | (mkdir "$work/$1/src" && tar -x -C "$work/$1/src")
  echo "$work/$1/bin/python"
}

# What the venv's python imports, from a folder that is not the source tree.
loaded() {
  (cd "$work" && "$1" -c 'import json, rnnkernels
print(json.dumps({"file": rnnkernels.__file__, "cpp": rnnkernels.backend_info()["compiled"]["cpp"]}))')
}

expect() {  # expect <python> <where the package must load from> <cpp compiled: true|false>
  local got
  got=$(loaded "$1")
  echo "  loaded: $got"
  python - "$got" "$2" "$3" <<'PY'
import json, sys
got = json.loads(sys.argv[1])
assert got["file"].startswith(sys.argv[2]), f"rnnkernels loaded from {got['file']}, not {sys.argv[2]}"
assert got["cpp"] == (sys.argv[3] == "true"), f"compiled cpp is {got['cpp']}, expected {sys.argv[3]}"
PY
}

echo "install path: isolated editable build (must stop with the advice)"
py=$(fresh_venv isolated)
"$py" -m pip --version
if (cd "$work/isolated/src" && "$py" -m pip install -e . >"$work/isolated.log" 2>&1); then
  cat "$work/isolated.log"; echo "an isolated build succeeded without torch" >&2; exit 1
fi
grep -q "Install torch first" "$work/isolated.log" || { cat "$work/isolated.log"; exit 1; }

echo "install path: editable, --no-build-isolation"
py=$(fresh_venv editable)
(cd "$work/editable/src" && "$py" -m pip install --quiet --no-build-isolation --no-deps -e .)
expect "$py" "$work/editable/src/rnnkernels" true

echo "install path: regular, --no-build-isolation"
py=$(fresh_venv regular)
(cd "$work/regular/src" && "$py" -m pip install --quiet --no-build-isolation --no-deps .)
expect "$py" "$work/regular/lib" true

echo "install path: RNNKERNELS_PYTHON_ONLY=1"
py=$(fresh_venv python_only)
(cd "$work/python_only/src" && RNNKERNELS_PYTHON_ONLY=1 "$py" -m pip install --quiet \
  --no-build-isolation --no-deps .)
expect "$py" "$work/python_only/lib" false
echo "install paths: all as expected"
