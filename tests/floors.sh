#!/usr/bin/env bash
# The oldest releases setup.cfg allows, tested: Python 3.10 with numpy, numba, scikit-image,
# scikit-learn and the small dependencies each at its floor, in a virtual environment of
# their own, running the kernel, plan and model tests with an empty numba cache.
#
#   bash tests/floors.sh            (FLOORS_VENV and FLOORS_PYTHON may say where and which)
#
# Keep the pins below equal to setup.cfg's floors: tests/test_packaging.py checks it.
set -euo pipefail
cd "$(dirname "$0")/.."

# A Python 3.10 that runs: FLOORS_PYTHON, python3.10 on the PATH (a pyenv shim on it may
# name a version pyenv has but has not selected), or pyenv's own 3.10 installations.
runs_310() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' \
                 2>/dev/null; }
PYTHON=""
for candidate in "${FLOORS_PYTHON:-}" "$(command -v python3.10 || true)" \
        $(command -v pyenv >/dev/null && ls -d "$(pyenv root)"/versions/3.10*/bin/python3.10 \
          2>/dev/null || true); do
    if runs_310 "$candidate"; then PYTHON="$candidate"; break; fi
done
if [ -z "$PYTHON" ]; then
    echo "floors: no Python 3.10 that runs on this machine (set FLOORS_PYTHON); not tested" >&2
    exit 1
fi
VENV="${FLOORS_VENV:-.ci/floors-venv}"
FLOORS=(numpy==1.24.4 numba==0.61.0 scikit-image==0.20.0 scikit-learn==1.2.2 tqdm==4.60.0
        filelock==3.12.0 platformdirs==3.0.0 threadpoolctl==3.1.0 pillow==9.1.0)

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "${FLOORS[@]}" scipy==1.9.3 pytest pytest-benchmark \
    hypothesis
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/python" -c "import sys, numpy, numba, skimage, sklearn; print('floors: Python',
    sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__,
    'scikit-image', skimage.__version__, 'scikit-learn', sklearn.__version__)"

CACHE="$(mktemp -d)"
trap 'rm -rf "$CACHE"' EXIT
NUMBA_CACHE_DIR="$CACHE" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    -k "not avx2_processor and not avx512 and not edit_of_the_vector" \
    tests/test_kernels.py tests/test_vectors.py tests/test_routes.py tests/test_plan.py \
    tests/test_model.py
