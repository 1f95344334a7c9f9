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
import stat
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
    if not stat.S_ISREG(os.stat(path).st_mode):       # a FIFO would block, a device never end
        raise ModelFileError(f"load: {path!r} is not a regular file (a folder, a pipe or a "
                             f"device), so not a numcnn {kind} file")
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
    except (json.JSONDecodeError, RecursionError) as error:
        raise ModelFileError(f"load: {path!r} has a damaged numcnn header "
                             f"({type(error).__name__}: {error})") from None
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
        store[name] = _as_stored(arrays[key], current, f"{key} of {layer.describe()}", path)


def _as_stored(value, current, what, path):
    """``value`` cast to ``current``'s dtype, once its shape, kind and finiteness (after the
    cast: float64 beyond 3.4e38 becomes infinite in float32) are checked."""
    if value.shape != current.shape:
        raise ModelFileError(f"load: {path!r}: {what} has shape {value.shape}; the "
                             f"architecture expects {current.shape}")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise ModelFileError(f"load: {path!r}: {what} is of dtype {value.dtype}; numbers "
                             f"were expected")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = value.astype(current.dtype)
    if not np.isfinite(cast).all():
        raise ModelFileError(f"load: {path!r}: {what} holds NaN or infinite values "
                             f"{'once cast to ' + str(current.dtype) + ' ' if np.isfinite(value).all() else ''}"
                             f"(a model whose training diverged, or a damaged file): it "
                             f"cannot be used")
    return cast


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
            _check_declared_arrays(cls, spec["config"], arrays, i, path)
            layers.append(cls(**spec["config"]))
        model = Sequential(layers, seed=header["seed"])
        for i, layer in enumerate(model.layers):
            _fill(layer.params, arrays, f"layer{i}/param", layer, path)
            _fill(layer.buffers, arrays, f"layer{i}/buffer", layer, path)
        if header["loss"] is not None and header["optimizer"] is not None:
            model.compile(_optimizer_from(header["optimizer"], arrays, model, path),
                          LOSS_CLASSES[header["loss"]["class"]](**header["loss"]["config"]))
        model.rng.bit_generator.state = header["rng_state"]
        model.epoch = int(header["epoch"])
        model.history = History.from_dict(header["history"])
        if header["input_shape"] is not None:
            model.build(header["input_shape"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as error:
        raise ModelFileError(f"load: {path!r} describes a model this numcnn cannot build "
                             f"({type(error).__name__}: {error})") from None
    return model


def _check_declared_arrays(cls, config, arrays, i, path):
    """The arrays layer ``i``'s header declares are the ones the file holds for it (names
    and shapes), before the layer is made: a hand-edited header cannot make numcnn
    allocate what the file does not hold."""
    if not isinstance(config, dict):
        raise ModelFileError(f"load: {path!r} layer {i} has a config that is not a mapping")
    declared = {f"layer{i}/{name}": tuple(shape)
                for name, shape in cls.array_shapes(config).items()}
    held = {key: value.shape for key, value in arrays.items() if key.startswith(f"layer{i}/")}
    layer = f"{cls.__name__} layer {i}"
    for key, shape in declared.items():
        if key not in held:
            raise ModelFileError(f"load: {path!r} lacks {key} for {layer}")
        if held[key] != shape:
            raise ModelFileError(f"load: {path!r}: {key} of {layer} has shape {held[key]}; "
                                 f"the header declares the layer with {shape}")
    for key in sorted(set(held) - set(declared)):
        raise ModelFileError(f"load: {path!r} holds {key}, which {layer} does not have")


def _optimizer_from(spec, arrays, model, path):
    """The optimizer of a header, with its state checked against ``model``'s parameters
    (names, shapes, dtype, finite once cast); the learning rate may have reached 0."""
    config = dict(spec["config"])
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    lr = config.pop("lr")
    optimizer = optim_module.OPTIMIZERS[spec["class"]](lr=1.0, **config)
    optimizer.lr = lr                                 # a schedule may have brought it to 0
    params = {key: param for key, param, _ in model.param_slots()}
    state = {}
    for name, value in arrays.items():
        if not name.startswith("optim/"):
            continue
        flat = name[len("optim/"):]
        if flat == "iterations":
            if value.shape != () or not np.issubdtype(value.dtype, np.integer) or value < 0:
                raise ModelFileError(f"load: {path!r}: the optimizer's step counter is "
                                     f"{value!r}; a whole number >= 0 was expected")
            state[flat] = value
            continue
        key, _, slot = flat.rpartition("/")
        if key not in params or slot not in optimizer.state_names:
            raise ModelFileError(f"load: {path!r}: the optimizer state {flat!r} belongs to no "
                                 f"parameter of the model ({type(optimizer).__name__} keeps "
                                 f"{list(optimizer.state_names)} per parameter)")
        state[flat] = _as_stored(value, params[key], f"the optimizer state {flat}", path)
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
