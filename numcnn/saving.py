"""Save and load models and weights: one ``.npz`` file each, never unpickled.

A model file holds a JSON header (the architecture, the loss, the optimizer's
settings, the random state, the epoch counter and the history) and the arrays
(parameters, BatchNorm statistics, optimizer state), all under names that
:func:`load_model` checks one by one. A weights file holds the parameters and
buffers only, with the layer classes and shapes to check them against.

Files are written through :func:`numcnn.files.write_atomically`, so a crash
never leaves half a file, and a model whose weights are not finite is never
written. Reading never unpickles anything (``allow_pickle=False``).

Files of format version 1 (numcnn 0.1) load: their ``Adam`` with weight decay
was decoupled weight decay and loads as ``AdamW``; a final ``Softmax`` layer is
dropped (a model ends in logits now).
"""
import json
import os
import zipfile

import numpy as np

from . import layers as layers_module
from . import losses as losses_module
from . import optim as optim_module
from .callbacks import History
from .errors import ModelFileError
from .files import write_atomically

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "FORMAT",
           "FORMAT_VERSION"]

FORMAT = "numcnn-model"
"""The ``format`` a model file's header names."""
FORMAT_VERSION = 2
"""The version of the model format this numcnn writes (it reads 1 and 2)."""
WEIGHTS_FORMAT = "numcnn-weights"
WEIGHTS_VERSION = 1
LAYER_CLASSES = {name: getattr(layers_module, name) for name in layers_module.__all__
                 if name not in ("Layer", "BatchNorm")}
LOSS_CLASSES = {"SoftmaxCrossEntropy": losses_module.SoftmaxCrossEntropy}


def _layer_arrays(model):
    """``{"layer<i>/<param|buffer>/<name>": array}`` of every layer."""
    arrays = {}
    for i, layer in enumerate(model.layers):
        for kind, store in (("param", layer.params), ("buffer", layer.buffers)):
            for name, value in store.items():
                arrays[f"layer{i}/{kind}/{name}"] = value
    return arrays


def _check_finite(arrays, where):
    for name, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ValueError(f"{where}: {name} holds NaN or infinite values; numcnn does not "
                             f"write a model that cannot be trusted")


def _write_npz(path, header, arrays):
    arrays = {"__numcnn__": np.array(json.dumps(header)), **arrays}
    return write_atomically(os.fspath(path), lambda handle: np.savez(handle, **arrays))


def save_model(model, path):
    """Write a whole :class:`numcnn.Sequential`, ready to predict or to resume ``fit``.

    Architecture, weights, running statistics, loss, optimizer (settings and
    state), random state, epoch counter and history, in one ``.npz`` at
    ``path`` (the name is kept as given). Load it with :func:`load_model`
    (``numcnn.load``).

    Raises
    ------
    ValueError
        A parameter or buffer is not finite (nothing is written).
    OSError
        The folder is missing, read-only or full (nothing is left behind).
    """
    arrays = _layer_arrays(model)
    _check_finite(arrays, "save")
    header = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "numcnn_version": _numcnn_version(),
        "layers": [{"class": type(layer).__name__, "config": layer.config()}
                   for layer in model.layers],
        "seed": model.seed,
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "epoch": model.epoch,
        "history": model.history.to_dict(),
        "rng_state": model.rng.bit_generator.state,
        "loss": None if model.loss is None else {"class": type(model.loss).__name__,
                                                  "config": model.loss.config()},
        "optimizer": None if model.optimizer is None else {
            "class": type(model.optimizer).__name__, "config": model.optimizer.config()},
    }
    if model.optimizer is not None:
        for name, value in model.optimizer.state_arrays().items():
            arrays[f"optim/{name}"] = value
    return _write_npz(path, header, arrays)


def _numcnn_version():
    from . import __version__
    return __version__


def _read(path, kind, expected_format, versions):
    """The header and arrays of a numcnn file; ModelFileError naming what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no {kind} file at {path!r}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):     # a .npy: an array, no `with`
            raise ValueError("a single .npy array, not a .npz archive")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, AttributeError) as error:
        raise ModelFileError(f"load: {path!r} is not a readable numcnn {kind} file "
                             f"(damaged, or not a .npz archive: {error})") from None
    if "__numcnn__" not in arrays:
        raise ModelFileError(f"load: {path!r} is a .npz archive but not a numcnn {kind} file "
                             "(it has no '__numcnn__' header)")
    try:
        header = json.loads(str(arrays.pop("__numcnn__")))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"load: {path!r} has a damaged numcnn header ({error})") from None
    if not isinstance(header, dict) or header.get("format") != expected_format \
            or header.get("version") not in versions:
        got = header.get("format") if isinstance(header, dict) else None
        version = header.get("version") if isinstance(header, dict) else None
        raise ModelFileError(f"load: {path!r} is format {got!r} version {version!r}; this "
                             f"numcnn reads {expected_format!r} versions {list(versions)}")
    return path, header, arrays


def _migrate_version_1(header):
    """A version-1 header as version 2 says it: Adam with weight decay -> AdamW; no final Softmax."""
    header = dict(header)
    optimizer = header.get("optimizer")
    if optimizer and optimizer["class"] == "Adam" and optimizer["config"].get("weight_decay"):
        header["optimizer"] = {**optimizer, "class": "AdamW"}      # 0.1's Adam decoupled the decay
    if header["layers"] and header["layers"][-1]["class"] == "Softmax":
        header["layers"] = header["layers"][:-1]                    # it had no parameters
    return header


def _fill(store, arrays, prefix, layer, path):
    for name, current in store.items():
        key = f"{prefix}/{name}"
        if key not in arrays:
            raise ModelFileError(f"load: {path!r} lacks {key} for {layer.describe()}")
        value = arrays[key]
        if value.shape != current.shape:
            raise ModelFileError(f"load: {path!r}: {key} of {layer.describe()} has shape "
                                 f"{value.shape}; the architecture expects {current.shape}")
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ModelFileError(f"load: {path!r}: {key} of {layer.describe()} holds NaN or "
                                 f"infinite values (a model whose training diverged): it "
                                 f"cannot be used")
        store[name] = value.astype(current.dtype)


def load_model(path):
    """Rebuild a :class:`numcnn.Sequential` written by :func:`save_model`, ready to resume.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError (a ValueError)
        The file is damaged, is not a ``.npz``, is a ``.npz`` that numcnn did
        not write, or its arrays do not match the architecture it describes or
        are not finite.
    """
    from .model import Sequential

    path, header, arrays = _read(path, "model", FORMAT, (1, FORMAT_VERSION))
    if header["version"] == 1:
        header = _migrate_version_1(header)
    try:
        layers = []
        for i, spec in enumerate(header["layers"]):
            cls = LAYER_CLASSES.get(spec["class"])
            if cls is None:
                raise ModelFileError(f"load: {path!r} layer {i} has unknown class {spec['class']!r}")
            layers.append(cls(**spec["config"]))
        model = Sequential(layers, seed=header["seed"])
        for i, layer in enumerate(model.layers):
            _fill(layer.params, arrays, f"layer{i}/param", layer, path)
            _fill(layer.buffers, arrays, f"layer{i}/buffer", layer, path)
        if header["loss"] is not None and header["optimizer"] is not None:
            model.compile(_optimizer_from(header["optimizer"], arrays),
                          LOSS_CLASSES[header["loss"]["class"]](**header["loss"]["config"]))
        model.rng.bit_generator.state = header["rng_state"]
        model.epoch = int(header["epoch"])
        model.history = History.from_dict(header["history"])
        if header["input_shape"] is not None:
            model.build(header["input_shape"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"load: {path!r} describes a model this numcnn cannot build "
                             f"({type(error).__name__}: {error})") from None
    return model


def _optimizer_from(spec, arrays):
    """The optimizer of a header, with its state; the learning rate may have reached 0."""
    config = dict(spec["config"])
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    lr = config.pop("lr")
    optimizer = optim_module.OPTIMIZERS[spec["class"]](lr=1.0, **config)
    optimizer.lr = lr                                 # a schedule may have brought it to 0
    state = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    for name, value in state.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ModelFileError(f"load: the optimizer state {name} holds NaN or infinite values")
    optimizer.load_state_arrays(state)
    return optimizer


def _architecture(model):
    return [{"class": type(layer).__name__,
             "arrays": {f"{kind}/{name}": list(value.shape)
                        for kind, store in (("param", layer.params), ("buffer", layer.buffers))
                        for name, value in store.items()}}
            for layer in model.layers]


def save_weights(model, path):
    """Write only the parameters and buffers of ``model`` to ``path`` (``.npz``).

    Smaller than a whole model and independent of the optimizer; load them
    into a model of the same architecture with :func:`load_weights`.
    """
    arrays = _layer_arrays(model)
    _check_finite(arrays, "save_weights")
    header = {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION,
              "numcnn_version": _numcnn_version(), "architecture": _architecture(model)}
    return _write_npz(path, header, arrays)


def load_weights(model, path):
    """Set ``model``'s parameters and buffers from a file of :func:`save_weights`.

    Raises ModelFileError if the file's layers or shapes differ from the model's.
    """
    path, header, arrays = _read(path, "weights", WEIGHTS_FORMAT, (WEIGHTS_VERSION,))
    if header.get("architecture") != _architecture(model):
        raise ModelFileError(f"load_weights: {path!r} holds weights for another architecture "
                             f"({[spec['class'] for spec in header.get('architecture', [])]}); "
                             f"the model has {[type(layer).__name__ for layer in model.layers]}")
    for i, layer in enumerate(model.layers):
        _fill(layer.params, arrays, f"layer{i}/param", layer, path)
        _fill(layer.buffers, arrays, f"layer{i}/buffer", layer, path)
