#!/usr/bin/env bash
# numcnn as a user installs it: build the source distribution and the wheel, check what the
# sdist holds, install the wheel alone into a fresh virtual environment outside the checkout,
# then run `python -m numcnn info` and train a small network on the digits from it.
#
#   bash tests/packaging.sh         (PACKAGING_DIR says where to work; default a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
WORK="${PACKAGING_DIR:-$(mktemp -d)}"
mkdir -p "$WORK"

python -m pip install --quiet build
python -m build --sdist --wheel --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
SDIST=$(ls "$WORK"/dist/numcnn-*.tar.gz)
WHEEL=$(ls "$WORK"/dist/numcnn-*.whl)
echo "built $(basename "$SDIST") and $(basename "$WHEEL")"

# The sdist holds the licence, the changelog, the tests, the examples, the benchmarks and
# the docs; the wheel the package and the PBC split table; neither any data or model.
python - "$SDIST" "$WHEEL" <<'PY'
import sys, tarfile, zipfile
sdist = [name.split("/", 1)[1] for name in tarfile.open(sys.argv[1]).getnames() if "/" in name]
wheel = zipfile.ZipFile(sys.argv[2]).namelist()
for wanted in ("LICENSE", "CHANGELOG.md", "README.md", "conftest.py", "tests/test_model.py",
               "tests/routes.py", "examples/bloodcells.py", "examples/digits.py", "docs/index.md",
               "benchmarks/compare.py", "numcnn/datasets/pbc_splits.csv.gz"):
    assert wanted in sdist, f"the sdist lacks {wanted}"
for wanted in ("numcnn/__init__.py", "numcnn/kernels/jit/vectors.py",
               "numcnn/datasets/pbc_splits.csv.gz", "numcnn/datasets/pbc_splits.README.md"):
    assert wanted in wheel, f"the wheel lacks {wanted}"
assert any(name.endswith("LICENSE") for name in wheel), "the wheel lacks the licence"
for name in sdist + wheel:
    assert not name.endswith((".npz", ".npy", ".jpeg", ".jpg", ".pyc")), f"{name} was packed"
print(f"sdist: {len(sdist)} files, wheel: {len(wheel)} files, as they should be")
PY

python -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL"
cd "$WORK"                                     # outside the checkout: only the wheel is seen
"$WORK/venv/bin/python" -m numcnn info
"$WORK/venv/bin/python" - "$REPO" <<'PY'
import sys
import numcnn
from numcnn.datasets import digits
from numcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
assert not numcnn.__file__.startswith(sys.argv[1]), f"numcnn came from {numcnn.__file__}"
train, test = digits.load_data("train"), digits.load_data("test")
model = numcnn.Sequential([Conv2D(1, 16, 3, padding=1), BatchNorm2D(16), ReLU(), MaxPool2D(2),
                           Flatten(), Dense(16 * 4 * 4, 10)], seed=0)
model.compile(numcnn.optim.AdamW(3e-3), numcnn.losses.SoftmaxCrossEntropy())
model.fit(train.x, train.y, batch_size=32, epochs=3, verbose=0)
accuracy = model.evaluate(test.x, test.y)["accuracy"]
print(f"the installed wheel ({numcnn.__file__}) trained on digits: test accuracy {accuracy:.3f}")
assert accuracy > 0.8, accuracy
PY
