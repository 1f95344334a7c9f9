"""Tests of PBC's public layout: the original JPEGs as the authors publish them.

The originals are the 40 of a sample laid out as ``PBC_dataset_normal_DIB.zip``
unpacks (five per class), found through NUMCNN_PBC_ORIGINALS (the folder that
holds ``PBC_dataset_normal_DIB/``, or that folder itself) or
``<repo>/../shared/pbc-originals-sample``. The prepared images they are
compared with come from the prepared copy at NUMCNN_PBC or
``<repo>/../shared/pbc``. Each group skips when its data is absent; tests that
change files work on copies in tmp_path. The default cache is a temporary
folder (NUMCNN_CACHE).
"""

import configparser
import contextlib
import csv
import gzip
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import numcnn.data.cache
from numcnn.testing import load_script
from numcnn.data import downscale, preprocess_image, read_rgb_image
from numcnn.datasets import pbc
from numcnn.datasets.pbc_originals import (ORIGINALS_FOLDER, PrepareOriginal, file_md5,
                                           find_originals_folder, prepare_original)
from numcnn.errors import DataError, DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[1]
ORIGINALS_ENV_VAR = "NUMCNN_PBC_ORIGINALS"
THRESHOLD = 0.02    # mean absolute difference in [0, 1] allowed per image (JPEG rounding: 0.006-0.019)


@pytest.fixture(scope="module")
def originals():
    """The sample's ``PBC_dataset_normal_DIB`` folder (absolute)."""
    place = Path(os.environ.get(ORIGINALS_ENV_VAR)
                 or REPO_ROOT.parent / "shared" / "pbc-originals-sample")
    folder = find_originals_folder(place, pbc.CLASSES)
    if folder is None:
        pytest.skip(f"PBC originals not found at {place} (set {ORIGINALS_ENV_VAR} to the folder "
                    f"holding {ORIGINALS_FOLDER}/ to run these tests)")
    return folder.resolve()


@pytest.fixture
def download(originals, tmp_path):
    """``tmp_path/download/PBC_dataset_normal_DIB``: a copy of the sample, to change."""
    copy = tmp_path / "download" / ORIGINALS_FOLDER
    shutil.copytree(originals, copy)
    return copy


def shipped_rows():
    """The shipped table, read here without numcnn's parser: ``{(class, file): row}``."""
    text = gzip.decompress((REPO_ROOT / "numcnn" / "datasets" / pbc.SPLIT_TABLE).read_bytes())
    return {(row["class"], row["file"]): row
            for row in csv.DictReader(io.StringIO(text.decode("utf-8")))}


def sample_files(folder):
    """The sample's originals: class by class (in label order), sorted by name."""
    return [path for name in pbc.CLASSES for path in sorted((folder / name).glob("*.jpg"))]


def load_partial(split, path, **settings):
    """``pbc.load_data`` of a partial copy: strict=False, and the warning it must give."""
    with pytest.warns(UserWarning, match=f"does not hold the {split} split.*strict=False: loading"):
        return pbc.load_data(split, path, strict=False, progress=False, **settings)


def difference(x, path, pbc_dir):
    """Mean absolute difference between a CHW image in [0, 1] and the prepared copy's image."""
    image = read_rgb_image(pbc_dir / "images" / path.parent.name / path.name)
    return float(np.abs(x - image.transpose(2, 0, 1) / 255.0).mean())


@pytest.fixture(scope="module")
def loaded(originals, tmp_path_factory):
    """Every split of the sample, loaded through the folder that holds PBC_dataset_normal_DIB."""
    cache = tmp_path_factory.mktemp("cache")
    return {split: load_partial(split, originals.parent, cache_dir=cache) for split in pbc.SPLITS}


# ----------------------------------------------------------------------------
# The split table numcnn ships
# ----------------------------------------------------------------------------

def test_shipped_table_lists_every_image_once_with_its_split_and_md5():
    rows = shipped_rows()
    assert len(rows) == 17_092
    counts = {split: sum(row["split"] == split for row in rows.values()) for split in pbc.SPLITS}
    assert counts == {"train": 11_967, "val": 1_710, "test": 3_415}
    assert all(re.fullmatch(r"[0-9a-f]{32}", row["md5_of_original"]) for row in rows.values())
    assert pbc.split_table() == {key: (row["split"], row["md5_of_original"])
                                 for key, row in rows.items()}


def test_shipped_table_is_the_prepared_copys_splits_csv(pbc_dir):
    table = REPO_ROOT / "numcnn" / "datasets" / pbc.SPLIT_TABLE
    assert gzip.decompress(table.read_bytes()) == (pbc_dir / "splits.csv").read_bytes()


def test_shipped_table_is_package_data_and_credits_the_authors():
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    shipped = setup["options.package_data"]["numcnn.datasets"].split()
    assert pbc.SPLIT_TABLE in shipped and "pbc_splits.README.md" in shipped
    readme = (REPO_ROOT / "numcnn" / "datasets" / "pbc_splits.README.md").read_text("utf-8")
    for credit in ("Acevedo", "Data in Brief 30 (2020) 105474", "doi:10.17632/snkd93bnjr.1",
                   "CC BY 4.0"):
        assert credit in readme and credit in pbc.__doc__ + pbc.CITATION


# ----------------------------------------------------------------------------
# The sample of originals: where, which split, how close to the prepared copy
# ----------------------------------------------------------------------------

def test_sample_is_what_it_claims(originals):
    rows = shipped_rows()
    files = sample_files(originals)
    assert len(files) == 40
    for path in files:
        assert file_md5(path) == rows[(path.parent.name, path.name)]["md5_of_original"]


def test_originals_land_in_their_splits_with_nothing_but_the_originals(originals, loaded):
    assert not list(originals.parent.rglob("splits.csv"))       # only the originals are there
    rows = shipped_rows()
    seen = []
    for split, images in loaded.items():
        expected = [path for path in sample_files(originals)
                    if rows[(path.parent.name, path.name)]["split"] == split]
        assert images.paths == expected and expected
        assert [pbc.CLASSES[label] for label in images.y] == [p.parent.name for p in images.paths]
        assert images.x.shape == (len(expected), 3, 128, 128) and images.x.dtype == np.float32
        assert images.classes == list(pbc.CLASSES) and images.skipped == []
        seen += images.paths
    assert sorted(seen) == sorted(sample_files(originals))
    assert pbc.locate(originals.parent) == pbc.locate(originals) == originals
    assert pbc.class_counts("val", originals) == {name: sum(
        row["class"] == name and row["split"] == "val" for row in rows.values())
        for name in pbc.CLASSES}


def test_the_folder_itself_loads_as_its_parent_does(originals, loaded):
    for split in ("train", "test"):
        itself = load_partial(split, originals)
        assert itself.paths == loaded[split].paths
        np.testing.assert_array_equal(itself.x, loaded[split].x)
        np.testing.assert_array_equal(itself.y, loaded[split].y)


def test_originals_are_within_jpeg_rounding_of_the_prepared_copy(loaded, pbc_dir):
    differences = [difference(x, path, pbc_dir)
                   for images in loaded.values() for x, path in zip(images.x, images.paths)]
    assert len(differences) == 40
    assert max(differences) <= THRESHOLD, sorted(differences)[-5:]
    for images in loaded.values():                     # the loader's rows are the recipe's images
        for x, path in zip(images.x, images.paths):
            np.testing.assert_array_equal(x, preprocess_image(read_rgb_image(path),
                                                              PrepareOriginal()))


def test_a_window_a_little_off_fails_that_threshold(originals, pbc_dir):
    """The control: the comparison above can fail. Measured on the 40: the right window
    0.006-0.019; two pixels down or right 0.013-0.048 (30 and 29 above 0.02), each image at
    least 1.9 times its right window's difference; one row lower (the other rounding of
    the odd margin of 363 rows) 0.009-0.031 (16 above 0.02)."""
    files = sample_files(originals)
    images = [read_rgb_image(path) for path in files]

    def differences(offset):
        return np.array([difference(prepare_original(image, offset).transpose(2, 0, 1) / 255.0,
                                    path, pbc_dir) for image, path in zip(images, files)])

    right = differences((0, 0))
    assert right.max() <= THRESHOLD
    for offset in ((2, 0), (0, 2)):
        off = differences(offset)
        assert (off > THRESHOLD).sum() >= 25, np.round(off, 4)   # most fail the threshold
        assert np.all(off > 1.5 * right), np.round(off / right, 2)
    assert differences((1, 0)).max() > THRESHOLD


def test_jpeg_encoding_the_prepared_original_gives_the_prepared_copys_pixels(originals, pbc_dir):
    """The recipe is the prepared copy's: encoded as it was (Pillow, JPEG quality 90), each
    image decodes to the prepared copy's pixels (bit for bit with Pillow 13; allowed here:
    1/1000 in mean, for another JPEG encoder's rounding)."""
    for path in sample_files(originals):
        buffer = io.BytesIO()
        Image.fromarray(prepare_original(read_rgb_image(path))).save(buffer, "JPEG", quality=90)
        encoded = np.asarray(Image.open(buffer)).transpose(2, 0, 1) / 255.0
        assert difference(encoded, path, pbc_dir) <= 1e-3, path


def test_sizes_subsets_and_the_cache(originals, tmp_path, monkeypatch):
    settings = dict(cache_dir=tmp_path / "cache")
    full = load_partial("train", originals, **settings)
    assert len(list((tmp_path / "cache").glob("pbc-originals-train-all-*.npz"))) == 1
    with monkeypatch.context() as patch:                   # the second load reads the cache
        patch.setattr(numcnn.data.cache, "decode_images",
                      lambda *args, **kwargs: pytest.fail("decoded again instead of cached"))
        np.testing.assert_array_equal(load_partial("train", originals, **settings).x, full.x)
    small = load_partial("train", originals, size=32, **settings)
    np.testing.assert_allclose(small.x, downscale(full.x, 4), atol=1e-6)
    two = load_partial("train", originals, classes=["platelet", "lymphocyte"],
                       max_per_class=2, **settings)
    assert two.classes == ["platelet", "lymphocyte"] and list(two.y) == [0, 0, 1, 1]
    for x, path in zip(two.x, two.paths):
        np.testing.assert_array_equal(x, full.x[full.paths.index(path)])


# ----------------------------------------------------------------------------
# A download that is partial, changed or not there
# ----------------------------------------------------------------------------

def test_strict_names_what_is_missing_and_what_is_not_listed(download):
    rows = shipped_rows()
    listed = sum(row["split"] == "train" for row in rows.values())
    present = sum(rows[(path.parent.name, path.name)]["split"] == "train"
                  for path in sample_files(download))
    stray = download / "monocyte" / "MO_000000.jpg"
    shutil.copy(sample_files(download)[0], stray)
    with pytest.raises(DataError) as error:
        pbc.load_data("train", download.parent, progress=False)
    message = str(error.value)
    assert f"{listed - present} of the {listed} images it lists are missing" in message
    assert re.search(r"e\.g\. basophil/BA_\d+\.jpg", message)
    assert f"1 image file(s) are not in it (e.g. {stray})" in message
    assert f"strict=False to load the {present} present" in message
    assert len(load_partial("train", download.parent)) == present


def test_a_changed_byte_is_named(download, tmp_path):
    target = download / "monocyte" / "MO_104431.jpg"
    split = shipped_rows()[("monocyte", target.name)]["split"]
    before = load_partial(split, download, cache_dir=tmp_path / "cache")   # cached, then changed
    assert target in before.paths
    content = bytearray(target.read_bytes())
    content[len(content) // 2] ^= 0x01
    target.write_bytes(bytes(content))
    named = f"1 of {len(before)} PBC original.*{re.escape(str(target))} has MD5 {file_md5(target)}"
    with pytest.raises(DataError, match=named):      # strict=False spares absent files only
        load_partial(split, download, cache_dir=tmp_path / "cache")
    other = "train" if split != "train" else "test"           # the other splits still load
    assert target not in load_partial(other, download).paths


def test_a_folder_without_originals_says_where_to_get_them(tmp_path):
    (tmp_path / "empty" / ORIGINALS_FOLDER).mkdir(parents=True)
    with pytest.raises(DataNotFoundError) as error:
        pbc.load_data("train", tmp_path / "empty", progress=False)
    assert f"{ORIGINALS_FOLDER}.zip" in str(error.value) and "Mendeley" in str(error.value)


# ----------------------------------------------------------------------------
# docs/pbc.md shows what docs/pbc_originals.py prints
# ----------------------------------------------------------------------------

def test_docs_table_is_current(originals, pbc_dir):
    script = load_script(REPO_ROOT / "docs" / "pbc_originals.py", "docs_pbc_originals")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        script.main(originals, pbc_dir)
    rows = [line for line in printed.getvalue().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(script.CANDIDATES)
    page = (REPO_ROOT / "docs" / "pbc.md").read_text(encoding="utf-8")
    stale = [row for row in rows if row not in page]
    assert not stale, f"docs/pbc.md shows other figures; rerun docs/pbc_originals.py: {stale}"
