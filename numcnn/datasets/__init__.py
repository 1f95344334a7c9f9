"""Loaders for the real datasets numcnn is taught with, one function each (as ``keras.datasets``).

- :mod:`numcnn.datasets.bloodcells`: the Kaggle blood-cell images (four
  classes of white blood cells, 12,444 augmented 320x240 JPEGs).
- :mod:`numcnn.datasets.pbc`: the PBC dataset of Acevedo et al. (2020):
  17,092 single blood cells of eight classes, 128x128, with a fixed split;
  read from a prepared copy or from the public download, whose originals
  :mod:`numcnn.datasets.pbc_originals` checks and prepares.
- :mod:`numcnn.datasets.digits`: scikit-learn's 8x8 handwritten digits
  (1,797 grey images of ten classes, shipped with scikit-learn), with a fixed
  split: a dataset that trains in seconds.

Each module's ``load_data(split, ...)`` returns a :class:`numcnn.data.ImageSet`
(NCHW float32 in [0, 1], labels, class names, where each image came from).
The two blood-cell loaders find the data (an argument, then an environment
variable, then documented default places), decode the JPEGs and cache the
decoded images, keyed on the files' bytes and the settings
(:mod:`numcnn.data.cache`). A missing dataset raises
:class:`numcnn.errors.DataNotFoundError` with where to get it; a damaged one a
:class:`numcnn.errors.DataError` naming the file. The digits come with
scikit-learn, a dependency: nothing to find or download.
"""
from . import bloodcells, digits, pbc

__all__ = ["bloodcells", "digits", "pbc", "places"]

#: The datasets that must be found on disk, by name.
DOWNLOADED = {"bloodcells": bloodcells, "pbc": pbc}


def places():
    """``{name: (folder or None, how to get it)}`` for every dataset numcnn loads."""
    from ..errors import DataNotFoundError
    found = {"digits": ("inside scikit-learn (no download)", "")}
    for name, module in DOWNLOADED.items():
        try:
            found[name] = (str(module.locate()), "")
        except DataNotFoundError:
            found[name] = (None, f"not found: get it from {module.SOURCE_URL}, then pass --data "
                                 f"or set {module.DATA_ENV_VAR}")
    return found
