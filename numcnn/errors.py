"""The typed errors numcnn raises, so that a program can tell them apart.

Every error is also a built-in exception of the usual kind (a missing folder
is a ``FileNotFoundError``, a damaged file a ``ValueError``), so code written
against the built-in types keeps working. numcnn never exits the process: a
command-line program maps these types to its exit statuses.

- :class:`DataError`: the data on disk cannot be used as it is (a missing,
  empty or unexpected class folder, a missing split, a damaged index file,
  no usable image). :class:`DataNotFoundError` is the case where nothing was
  found at all.
- :class:`ModelFileError`: a file that is not a readable numcnn model or
  weights file (damaged, truncated, foreign, or written by an incompatible
  version).
- :class:`NonFiniteOutputError`: a model whose outputs are not finite, so
  that no class can be predicted.
- :class:`NonFiniteModelError`: a model whose weights, BatchNorm statistics
  or optimizer state are not finite (or whose running variance is negative),
  found before it is trained or used.
- :class:`DivergenceWarning` (a warning, not an error): training stopped
  because it stopped being finite; :class:`RunawayLossWarning`: its loss ran
  away, but training goes on.
"""

__all__ = ["NumcnnError", "DataError", "DataNotFoundError", "ModelFileError",
           "NonFiniteOutputError", "NonFiniteModelError", "DivergenceWarning",
           "RunawayLossWarning"]


class NumcnnError(Exception):
    """Base class of the errors numcnn raises on purpose."""


class DataError(NumcnnError, ValueError):
    """Data on disk that cannot be used as it is; the message names the file or folder."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset, split or folder that is not where it was looked for."""


class ModelFileError(NumcnnError, ValueError):
    """A file that is not a readable numcnn model (or weights) file."""


class DivergenceWarning(RuntimeWarning):
    """Training stopped because the loss, a gradient or a weight stopped being finite."""


class RunawayLossWarning(RuntimeWarning):
    """An epoch's training loss ran far above that of a uniform guess (training goes on)."""


class NonFiniteOutputError(NumcnnError, ValueError):
    """A model gave NaN or infinite outputs: no prediction can be made from them."""


class NonFiniteModelError(NumcnnError, ValueError):
    """A model whose weights, statistics or optimizer state cannot be used: NaN or
    infinite values (after the cast to the model's float32, too), or a negative
    BatchNorm running variance. The message names the layer and the array."""
