"""Sequential: a stack of layers with a Keras-like training interface."""
import json
import math
import os
import time
import warnings
import zipfile

import numpy as np
from tqdm.auto import tqdm

from . import layers as layers_module
from . import losses as losses_module
from . import optim as optim_module
from .callbacks import Callback, History
from .layers.activation import Softmax, softmax
from .layers.base import Layer
from .layers.dropout import Dropout
from .layers.norm import BatchNorm2D
from .losses import check_labels
from .profiler import profile as profile_model

FORMAT = "numcnn-model"
FORMAT_VERSION = 1
LAYER_CLASSES = {name: getattr(layers_module, name) for name in layers_module.__all__
                 if name != "Layer"}
LOSS_CLASSES = {"SoftmaxCrossEntropy": losses_module.SoftmaxCrossEntropy}


def batch_starts(N, batch_size):
    """Boundaries of the training batches: ``[0, B, 2B, ..., N]``.

    A last batch of a single sample is merged into the one before it: BatchNorm
    cannot take batch statistics of one value per channel.
    """
    starts = list(range(0, N, batch_size)) + [N]
    if len(starts) > 2 and starts[-1] - starts[-2] == 1:
        del starts[-2]
    return starts


class Sequential:
    """Layers applied one after the other, trained by backpropagation.

    Parameters
    ----------
    layers : list of Layer
    seed : int, optional
        Seeds the one ``numpy.random.Generator`` behind the initial weights,
        dropout masks, shuffling and (through ``fit(augment=...)``) augmentation.
    input_shape : tuple, optional
        Shape of one sample, e.g. ``(3, 64, 64)``; checked against the layers at
        once and used by :meth:`summary`. Otherwise taken from the first batch.

    Notes
    -----
    Train with a fused loss on logits: if the last layer is a :class:`Softmax`
    and the loss is :class:`~numcnn.losses.SoftmaxCrossEntropy`, the Softmax is
    skipped while training and evaluating the loss, and applied by ``predict``.
    """

    def __init__(self, layers, seed=None, input_shape=None):
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        counts = {}
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a "
                                "numcnn layer")
            kind = type(layer).__name__.lower()
            counts[kind] = counts.get(kind, 0) + 1
            layer.name = f"{kind}_{counts[kind]}"
        self.layers = layers
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.build(self.rng)
        self.loss = None
        self.optimizer = None
        self.history = History()
        self.epoch = 0              # completed epochs, carried through save/load
        self.stop_training = False
        self.input_shape = None
        if input_shape is not None:
            self.build(input_shape)

    # -- structure -------------------------------------------------------------
    def build(self, input_shape):
        """Check that the layers fit together for samples of ``input_shape``.

        Returns the list of output shapes (one per layer, without the batch axis).
        """
        shape = tuple(int(s) for s in input_shape)
        shapes = []
        for layer in self.layers:
            shape = layer.output_shape(shape)
            shapes.append(shape)
        self.input_shape = tuple(int(s) for s in input_shape)
        self._output_shapes = shapes
        return shapes

    def compile(self, loss, optimizer):
        """Attach the loss (e.g. SoftmaxCrossEntropy()) and the optimizer (e.g. Adam())."""
        if not hasattr(loss, "forward") or not hasattr(loss, "backward"):
            raise TypeError(f"compile: loss must be a numcnn loss such as "
                            f"SoftmaxCrossEntropy(); got {type(loss).__name__}")
        if not isinstance(optimizer, optim_module.Optimizer):
            raise TypeError(f"compile: optimizer must be a numcnn optimizer such as "
                            f"Adam(); got {type(optimizer).__name__}")
        self.loss, self.optimizer = loss, optimizer
        return self

    @property
    def _logit_layers(self):
        """The layers that produce logits for the fused loss."""
        if isinstance(self.layers[-1], Softmax) and isinstance(
                self.loss, losses_module.SoftmaxCrossEntropy):
            return self.layers[:-1]
        return self.layers

    def param_slots(self):
        """``(key, param, grad)`` for every parameter, keys like ``"3.W"``."""
        return [(f"{i}.{name}", layer.params[name], layer.grads[name])
                for i, layer in enumerate(self.layers) for name in layer.params]

    def num_params(self):
        return sum(layer.num_params() for layer in self.layers)

    # -- input checks ------------------------------------------------------------
    def _check_x(self, x, where, build=True):
        """Check type, dtype, shape and values of a batch; return it as float32.

        ``build=False`` checks only what does not depend on the image size (an
        augmentation may still crop it).
        """
        first = self.layers[0]
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{where}: x must be a NumPy array of shape {first.layout}; "
                            f"got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{where}: x must be float32 images in NCHW layout; got dtype "
                            f"{x.dtype} (convert with x.astype(np.float32) / 255)")
        if build:
            first.check_input(x)
        else:
            first.check_sample_shape(x.shape[1:])  # the rank; sizes are checked after augmenting
        if len(x) == 0:
            raise ValueError(f"{where}: x holds no samples (shape {x.shape})")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if build and self.input_shape != x.shape[1:]:
            self.build(x.shape[1:])
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
            raise ValueError(f"{where}: x holds NaN or infinite values ({bad} of {len(x)} samples)")
        return x

    def _num_classes(self):
        return self._output_shapes[-1][0]

    # -- passes --------------------------------------------------------------------
    def _forward(self, x, training, layers=None):
        for layer in (self.layers if layers is None else layers):
            x = layer.run_forward(x, training)
        return x

    def _backward(self, dy, layers):
        for i, layer in reversed(list(enumerate(layers))):
            dy = layer.backward(dy, input_grad=i > 0)
        return dy

    def train_step(self, xb, yb):
        """One step of gradient descent on a batch; returns (loss, correct count).

        If the loss or a gradient is not finite, nothing is updated (also the
        BatchNorm running statistics are restored) and ``(nan, 0)`` is returned.
        """
        layers = self._logit_layers
        saved_buffers = [{k: v.copy() for k, v in layer.buffers.items()} for layer in layers]
        updated = False
        try:
            logits = self._forward(xb, training=True, layers=layers)
            loss = self.loss.forward(logits, yb)
            if math.isfinite(loss):
                self._backward(self.loss.backward(), layers)
                slots = self.param_slots()
                if all(np.isfinite(grad).all() for _, _, grad in slots):
                    self.optimizer.step(slots)
                    updated = True
                    return loss, int((logits.argmax(axis=1) == yb).sum())
            return math.nan, 0
        finally:
            if not updated:  # an error or a non-finite value: undo the running statistics
                for layer, buffers in zip(layers, saved_buffers):
                    layer.buffers.update(buffers)

    def fit(self, x, y, epochs, batch_size=32, validation_data=None, shuffle=True,
            callbacks=None, verbose=1, augment=None, initial_epoch=None):
        """Train for ``epochs`` epochs in all (counting epochs already done).

        Parameters
        ----------
        x : ndarray (N, C, H, W) float32
        y : ndarray (N,) int, class indices
        epochs : int
            Index of the last epoch: a model loaded from a checkpoint after 5
            epochs and fitted with ``epochs=20`` trains 15 more (as Keras's
            ``initial_epoch``; it defaults to the epochs already done).
        batch_size : int
        validation_data : (x_val, y_val), optional
            Evaluated after each epoch (``val_loss``, ``val_accuracy``).
        shuffle : bool
            Shuffle the training set every epoch with the model's Generator.
        callbacks : list of Callback, optional
        verbose : int
            1 shows a tqdm bar per epoch with the running loss and accuracy.
        augment : callable, optional
            ``augment(x_batch, rng) -> x_batch`` applied to each training batch,
            drawing from the model's Generator.

        Returns
        -------
        History
            ``history.history`` holds per-epoch ``loss``, ``accuracy``,
            ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds``.
        """
        if self.loss is None:
            raise RuntimeError("fit: call compile(loss, optimizer) first")
        if augment is None:
            x = self._check_x(x, "fit")
        else:  # the layers see augmented batches, which may be smaller (random crops)
            x = self._check_x(x, "fit", build=False)
            self._check_x(augment(x[:2], np.random.default_rng(0)), "fit: augmented batch")
        check_labels(y, len(x), self._num_classes(), where="fit: y")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"fit: batch_size must be a positive integer; got {batch_size!r}")
        if validation_data is not None:
            x_val, y_val = validation_data
            x_val = self._check_x(x_val, "fit: validation x")
            check_labels(y_val, len(x_val), self._num_classes(), where="fit: validation y")
        start = self.epoch if initial_epoch is None else int(initial_epoch)
        callbacks = [self.history] + list(callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"fit: {type(callback).__name__} is not a numcnn Callback")
            callback.set_model(self)
            callback.on_train_begin()
        self.stop_training = False
        self.history.stop_reason = None
        N = len(x)
        starts = batch_starts(N, batch_size)
        steps = len(starts) - 1
        for epoch in range(start, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            began = time.perf_counter()
            order = self.rng.permutation(N) if shuffle else np.arange(N)
            loss_sum, correct, seen = 0.0, 0, 0
            bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=not verbose, leave=True, dynamic_ncols=True)
            for step in range(steps):
                index = order[starts[step]:starts[step + 1]]
                xb, yb = x[index], y[index]
                if augment is not None:
                    xb = augment(xb, self.rng)
                loss, right = self.train_step(xb, yb)
                if not math.isfinite(loss):
                    self.stop_training = True
                    self.history.stop_reason = (f"non-finite loss or gradient at epoch {epoch + 1}, "
                                                f"batch {step + 1}; weights kept from the last "
                                                "finite step")
                    warnings.warn(f"fit stopped: {self.history.stop_reason}", RuntimeWarning,
                                  stacklevel=2)
                    break
                loss_sum += loss * len(index)
                correct += right
                seen += len(index)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
            if self.stop_training and seen < N:
                bar.close()
                break
            for callback in callbacks:
                callback.on_epoch_train_end(epoch)
            logs = {"loss": loss_sum / seen, "accuracy": correct / seen, "lr": self.optimizer.lr}
            if validation_data is not None:
                scores = self.evaluate(x_val, y_val, batch_size=batch_size)
                logs["val_loss"], logs["val_accuracy"] = scores["loss"], scores["accuracy"]
                bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['accuracy']:.4f}",
                                val_loss=f"{logs['val_loss']:.4f}",
                                val_acc=f"{logs['val_accuracy']:.4f}")
            logs["seconds"] = time.perf_counter() - began
            bar.close()
            self.epoch = epoch + 1
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
        return self.history

    def _batches(self, x, batch_size):
        for start in range(0, len(x), batch_size):
            yield start, x[start:start + batch_size]

    def recalibrate_batchnorm(self, x, batch_size=256):
        """Re-estimate every BatchNorm's running statistics as evaluation will see them.

        During training a BatchNorm that follows a Dropout collects statistics of
        *dropped-out* inputs, whose variance is larger than at evaluation, when
        dropout is off (the "variance shift" of Li et al., 2019). This pass runs
        ``x`` through the network with dropout off and each BatchNorm normalising
        by its batch, and sets the running mean and variance to the averages over
        the batches (unbiased variances, as in training): each BatchNorm's own
        running update with momentum ``1 / (k + 1)`` for batch ``k`` is exactly
        that cumulative mean. No parameter changes and no random numbers are drawn.

        Parameters
        ----------
        x : ndarray (N, C, H, W)
            Inputs as the model sees them at evaluation (e.g. training images
            without augmentation).
        batch_size : int
        """
        x = self._check_x(x, "recalibrate_batchnorm")
        layers = self._logit_layers
        norms = [layer for layer in layers if isinstance(layer, BatchNorm2D)]  # and BatchNorm1D
        momenta = [layer.momentum for layer in norms]
        try:
            for k, (_, xb) in enumerate(self._batches(x, batch_size)):
                for layer in norms:
                    layer.momentum = 1.0 / (k + 1)   # running = mean over batches 0..k
                h = xb
                for layer in layers:
                    if isinstance(layer, Dropout):
                        continue                     # evaluation: no dropout
                    h = layer.run_forward(h, training=isinstance(layer, BatchNorm2D))
        finally:
            for layer, momentum in zip(norms, momenta):
                layer.momentum = momentum

    def evaluate(self, x, y, batch_size=256):
        """Loss and accuracy in evaluation mode: ``{"loss": ..., "accuracy": ...}``.

        The loss is the mean over batches weighted by their size.
        """
        if self.loss is None:
            raise RuntimeError("evaluate: call compile(loss, optimizer) first")
        x = self._check_x(x, "evaluate")
        check_labels(y, len(x), self._num_classes(), where="evaluate: y")
        loss_sum, correct = 0.0, 0
        for start, xb in self._batches(x, batch_size):
            yb = y[start:start + len(xb)]
            logits = self._forward(xb, training=False, layers=self._logit_layers)
            loss_sum += self.loss.forward(logits, yb) * len(xb)
            correct += int((logits.argmax(axis=1) == yb).sum())
        return {"loss": loss_sum / len(x), "accuracy": correct / len(x)}

    def predict(self, x, batch_size=256):
        """Class probabilities (N, K), float32, computed in evaluation mode."""
        x = self._check_x(x, "predict")
        outputs = []
        for _, xb in self._batches(x, batch_size):
            out = self._forward(xb, training=False)
            if not isinstance(self.layers[-1], Softmax):
                out = softmax(out.astype(np.float64), axis=1)
            outputs.append(out.astype(np.float32))
        return np.concatenate(outputs)

    # -- reporting -----------------------------------------------------------------
    def profile(self, x, y, print_fn=print):
        """Time one training forward/backward per layer and measure its memory.

        Prints a table and returns it as data; see :func:`numcnn.profiler.profile`.
        """
        return profile_model(self, x, y, print_fn=print_fn)

    def summary(self, input_shape=None, print_fn=print):
        """Print (and return) a table of layers, output shapes and parameter counts."""
        if input_shape is not None:
            self.build(input_shape)
        if self.input_shape is None:
            raise ValueError("summary: the input shape is unknown; pass input_shape=(C, H, W) "
                             "here or to Sequential, or fit/predict once")
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer, shape in zip(self.layers, self._output_shapes):
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + shape),
                         f"{layer.num_params():,}"))
        trainable = self.num_params()
        frozen = sum(b.size for layer in self.layers for b in layer.buffers.values())
        widths = [max(len(r[i]) for r in rows) + 3 for i in range(3)]
        line = "=" * sum(widths)
        out = [f"Model: Sequential, input {(None,) + self.input_shape}", line]
        for k, row in enumerate(rows):
            out.append("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            out.append(line if k == 0 else "-" * sum(widths) if k < len(rows) - 1 else line)
        out += [f"Total params: {trainable + frozen:,}",
                f"Trainable params: {trainable:,}",
                f"Non-trainable params: {frozen:,}"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- persistence ------------------------------------------------------------------
    def save(self, path):
        """Write architecture, weights, running statistics, optimizer and random state.

        One ``.npz`` file, written to a temporary name and renamed, so a crash
        never leaves a broken file. Load it with :func:`numcnn.load`.
        """
        header = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "layers": [{"class": type(layer).__name__, "config": layer.config()}
                       for layer in self.layers],
            "seed": self.seed,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "epoch": self.epoch,
            "history": self.history.to_dict(),
            "rng_state": self.rng.bit_generator.state,
            "loss": None if self.loss is None else {"class": type(self.loss).__name__,
                                                    "config": self.loss.config()},
            "optimizer": None if self.optimizer is None else {
                "class": type(self.optimizer).__name__, "config": self.optimizer.config()},
        }
        arrays = {"__numcnn__": np.array(json.dumps(header))}
        for i, layer in enumerate(self.layers):
            for name, value in layer.params.items():
                arrays[f"layer{i}/param/{name}"] = value
            for name, value in layer.buffers.items():
                arrays[f"layer{i}/buffer/{name}"] = value
        if self.optimizer is not None:
            for name, value in self.optimizer.state_arrays().items():
                arrays[f"optim/{name}"] = value
        path = os.fspath(path)
        temporary = path + ".partial"
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, path)
        return path


def load(path):
    """Rebuild a :class:`Sequential` saved with :meth:`Sequential.save`, ready to resume.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is corrupt, is not a ``.npz``, or is a ``.npz`` that numcnn did
        not write; or its arrays do not match the architecture it describes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no model file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(f"load: {path!r} is not a readable numcnn model file "
                         f"(corrupt or not a .npz archive: {error})") from None
    if "__numcnn__" not in arrays:
        raise ValueError(f"load: {path!r} is a .npz archive but not a numcnn model "
                         "(it has no '__numcnn__' header)")
    try:
        header = json.loads(str(arrays.pop("__numcnn__")))
    except json.JSONDecodeError as error:
        raise ValueError(f"load: {path!r} has a corrupt numcnn header ({error})") from None
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise ValueError(f"load: {path!r} is format {header.get('format')!r} version "
                         f"{header.get('version')!r}; this numcnn reads {FORMAT!r} version "
                         f"{FORMAT_VERSION}")
    layers = []
    for i, spec in enumerate(header["layers"]):
        cls = LAYER_CLASSES.get(spec["class"])
        if cls is None:
            raise ValueError(f"load: {path!r} layer {i} has unknown class {spec['class']!r}")
        layers.append(cls(**spec["config"]))
    model = Sequential(layers, seed=header["seed"])
    for i, layer in enumerate(model.layers):
        for kind, store in (("param", layer.params), ("buffer", layer.buffers)):
            for name, current in store.items():
                key = f"layer{i}/{kind}/{name}"
                if key not in arrays:
                    raise ValueError(f"load: {path!r} lacks {key} for {layer.describe()}")
                value = arrays[key]
                if value.shape != current.shape:
                    raise ValueError(f"load: {path!r}: {key} of {layer.describe()} has shape "
                                     f"{value.shape}; the architecture expects {current.shape}")
                store[name] = value.astype(current.dtype)
    if header["loss"] is not None and header["optimizer"] is not None:
        loss = LOSS_CLASSES[header["loss"]["class"]](**header["loss"]["config"])
        optimizer_config = dict(header["optimizer"]["config"])
        if "betas" in optimizer_config:
            optimizer_config["betas"] = tuple(optimizer_config["betas"])
        optimizer = optim_module.OPTIMIZERS[header["optimizer"]["class"]](**optimizer_config)
        optimizer.load_state_arrays({k[len("optim/"):]: v for k, v in arrays.items()
                                     if k.startswith("optim/")})
        model.compile(loss, optimizer)
    model.rng.bit_generator.state = header["rng_state"]
    model.epoch = int(header["epoch"])
    model.history = History.from_dict(header["history"])
    if header["input_shape"] is not None:
        model.build(header["input_shape"])
    return model
