"""Print how closely PBC's originals, prepared by numcnn, match the prepared copy (Markdown).

Run:  python docs/pbc_originals.py [ORIGINALS [PREPARED]]

ORIGINALS is a folder of the public layout (``PBC_dataset_normal_DIB`` or the
folder holding it; default ``$NUMCNN_PBC_ORIGINALS``, else
``../shared/pbc-originals-sample`` beside the repository), PREPARED a prepared
copy (default ``$NUMCNN_PBC``, else ``../shared/pbc``). Every original found
is prepared by numcnn's recipe and by a few others (the window moved, another
bicubic), and each result is compared with the prepared copy's image of the
same file: the mean absolute difference over its 128 x 128 x 3 values in
[0, 1] (min, median and max over the images), how many exceed 0.02, and how
many give the prepared copy's pixels exactly once saved as JPEG quality 90
with Pillow, as the prepared copy was.
"""
import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the checkout, installed or not
from numcnn.data import read_rgb_image
from numcnn.datasets import pbc
from numcnn.datasets.pbc_originals import CROP_SIZE, PREPARED_SIZE, prepare_original

REPO_ROOT = Path(__file__).resolve().parent.parent

THRESHOLD = 0.02


def scikit_image_bicubic(image):
    """The recipe's window, resized by scikit-image (order 3, anti-aliasing), rounded."""
    height, width = image.shape[:2]
    top, left = (height - CROP_SIZE) // 2, (width - CROP_SIZE) // 2
    window = image[top:top + CROP_SIZE, left:left + CROP_SIZE]
    resized = resize(window, (PREPARED_SIZE, PREPARED_SIZE), order=3, anti_aliasing=True,
                     preserve_range=True)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


CANDIDATES = {
    "numcnn's recipe: rows (H-200)//2, columns (W-200)//2, Pillow bicubic": prepare_original,
    "the window 1 row lower (for 363 rows: the odd margin rounded up)": lambda image: prepare_original(image, (1, 0)),
    "the window 2 rows lower": lambda image: prepare_original(image, (2, 0)),
    "the window 2 columns to the right": lambda image: prepare_original(image, (0, 2)),
    "the recipe's window, scikit-image bicubic": scikit_image_bicubic,
}


def jpeg_90(image):
    """``image`` (HWC uint8) saved as JPEG quality 90 by Pillow, decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return np.asarray(Image.open(buffer))


def rows(originals, prepared):
    """One table row per candidate: (name, n, min, median, max, above, identical)."""
    folder = pbc.locate(originals)
    files = sorted(folder.glob("*/*.jpg"))
    images = [read_rgb_image(path) for path in files]
    targets = [read_rgb_image(Path(prepared) / "images" / path.parent.name / path.name)
               for path in files]
    for name, prepare in CANDIDATES.items():
        results = [prepare(image) for image in images]
        differences = np.array([np.abs(result / 255.0 - target / 255.0).mean()
                                for result, target in zip(results, targets)])
        identical = sum(np.array_equal(jpeg_90(result), target)
                        for result, target in zip(results, targets))
        yield (name, len(files), differences.min(), np.median(differences), differences.max(),
               int((differences > THRESHOLD).sum()), identical)


def main(originals=None, prepared=None):
    originals = originals or os.environ.get("NUMCNN_PBC_ORIGINALS") \
        or REPO_ROOT.parent / "shared" / "pbc-originals-sample"
    prepared = prepared or os.environ.get("NUMCNN_PBC") or REPO_ROOT.parent / "shared" / "pbc"
    print("| preparation | images | mean abs. difference: min | median | max "
          f"| above {THRESHOLD} | identical after JPEG 90 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, low, middle, high, above, identical in rows(originals, prepared):
        print(f"| {name} | {n} | {low:.4f} | {middle:.4f} | {high:.4f} | {above} | {identical} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
