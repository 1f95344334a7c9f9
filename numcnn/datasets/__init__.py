"""Loaders for the real datasets numcnn is taught with, one function each (as ``keras.datasets``).

- :mod:`numcnn.datasets.bloodcells`: the Kaggle blood-cell images (four
  classes of white blood cells, 12,444 augmented 320x240 JPEGs).
- :mod:`numcnn.datasets.pbc`: the PBC dataset of Acevedo et al. (2020):
  17,092 single blood cells of eight classes, 128x128, with a fixed split;
  read from a prepared copy or from the public download, whose originals
  :mod:`numcnn.datasets.pbc_originals` checks and prepares.

Each module's ``load_data(split, ...)`` finds the data (an argument, then an
environment variable, then documented default places), decodes it into NCHW
float32 in [0, 1] and returns a :class:`numcnn.data.ImageSet` (arrays, labels,
class names, file paths). The decoded images are cached, keyed on the files'
bytes and the settings (:mod:`numcnn.data.cache`). A missing dataset raises
:class:`numcnn.errors.DataNotFoundError` with where to get it; a damaged one a
:class:`numcnn.errors.DataError` naming the file.
"""
from . import bloodcells, pbc

__all__ = ["bloodcells", "pbc"]
