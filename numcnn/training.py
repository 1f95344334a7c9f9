"""Training: ``compile``, ``fit``, ``evaluate`` and ``predict``, with Keras' signatures.

:class:`Trainer` is the training half of :class:`numcnn.Sequential` (the model
inherits it, as a Keras ``Model`` inherits its trainer). It relies only on the
model's public stack interface: ``forward``, ``backward``, ``param_slots``,
``check_input``, ``layers`` and ``rng``.

One training step (:meth:`Trainer.train_step`): forward in training mode, the
loss on the logits, backward, then the optimizer's update. Training,
``evaluate`` and ``predict`` run the layers through the backend's plan
(:mod:`numcnn.plan`: fused steps where the numba backend has a faster
kernel); ``Sequential.forward`` runs them one by one. The step is
guarded: a loss or gradient that is not finite skips the update, and an update
that leaves a weight, a buffer (BatchNorm's running statistics) or the
optimizer's state not finite is undone from a :class:`numcnn.snapshot.Snapshot`
taken just before it. The same check follows the end-of-epoch callbacks
(``on_epoch_train_end``, e.g. BatchNorm re-calibration). Either way ``fit``
stops, says why (``history.stop_reason``, a :class:`numcnn.errors.DivergenceWarning`)
and sets ``history.diverged``: training never returns a model with
non-finite weights or statistics.
"""
import math
import time
import warnings

import numpy as np

from . import validation
from .callbacks import Callback, History, ProgressBar
from .errors import (DivergenceWarning, NonFiniteModelError, NonFiniteOutputError,
                     RunawayLossWarning)
from .layers.activation import softmax
from .layers.norm import BatchNorm
from .losses import Loss
from .optim import Optimizer
from .snapshot import Snapshot

__all__ = ["Trainer", "batch_starts", "RUNAWAY_LOSS_FACTOR"]

RUNAWAY_LOSS_FACTOR = 10.0
"""An epoch whose mean training loss exceeds this many times the loss of a
uniform guess (``log K`` for K classes) gets a warning: the learning rate is
probably too high. Training goes on."""


def batch_starts(N, batch_size):
    """Boundaries of the training batches: ``[0, B, 2B, ..., N]``.

    A last batch of a single sample is merged into the one before it: BatchNorm
    cannot take batch statistics of one value per channel.
    """
    starts = list(range(0, N, batch_size)) + [N]
    if len(starts) > 2 and starts[-1] - starts[-2] == 1:
        del starts[-2]
    return starts


class Trainer:
    """compile / fit / evaluate / predict for a model with a stack interface.

    Attributes
    ----------
    loss, optimizer
        Set by :meth:`compile`.
    history : History
        Every epoch ever trained, kept across ``fit`` calls and saved with the model.
    epoch : int
        Index of the next epoch: the last trained epoch's index + 1 (0 before
        training). Resume with ``fit(..., initial_epoch=model.epoch)``.
    stop_training : bool
        Set it in a callback to stop after the current epoch.
    """

    def __init__(self):
        self.loss = None
        self.optimizer = None
        self.history = History()
        self.epoch = 0
        self.stop_training = False
        self._before_step = None        # Snapshot of the state before an update
        self._plan = None               # (backend, route, layer ids, Plan) of the last pass

    def compile(self, optimizer, loss):
        """Attach the optimizer (e.g. ``AdamW()``) and the loss (e.g. ``SoftmaxCrossEntropy()``).

        The order is Keras': ``compile(optimizer, loss)``. Returns the model.
        """
        if isinstance(optimizer, Loss) and isinstance(loss, Optimizer):
            raise TypeError("compile takes the optimizer first, then the loss, as in Keras: "
                            "compile(optimizer, loss); got a loss and then an optimizer (the "
                            "order of numcnn 0.1): swap them")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"compile: optimizer must be a numcnn optimizer such as AdamW(); "
                            f"got {type(optimizer).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(f"compile: loss must be a numcnn loss such as "
                            f"SoftmaxCrossEntropy(); got {type(loss).__name__}")
        self.optimizer, self.loss = optimizer, loss
        self._before_step = None
        return self

    def plan(self):
        """The :class:`numcnn.plan.Plan` that training and prediction run (rebuilt when the
        backend or the layers change)."""
        from .backend import get_backend
        from .plan import build_plan
        from .routes import route
        key = (get_backend(), route(), tuple(id(layer) for layer in self.layers))
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, build_plan(self.layers))
        return self._plan[1]

    def _require_compiled(self, where):
        if self.loss is None:
            raise RuntimeError(f"{where}: call compile(optimizer, loss) first")

    # -- one step ----------------------------------------------------------------
    def train_step(self, xb, yb):
        """One step of gradient descent on a batch; returns ``(loss, correct count)``.

        If the loss or a gradient is not finite, nothing is updated; if the
        update leaves a weight, a buffer or the optimizer's state not finite,
        it is undone.
        In both cases the model is as before the step (BatchNorm running
        statistics included) and ``(nan, 0)`` is returned.
        """
        if self._before_step is None:
            self._before_step = Snapshot(self, optimizer=True)
        self._before_step.capture()
        updated = False
        try:
            # Non-finite values are looked for explicitly below: no NumPy warnings about them.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                plan = self.plan()
                logits = plan.forward(xb, training=True)
                loss = self.loss.forward(logits, yb)
                if math.isfinite(loss):
                    plan.backward(self.loss.backward())
                    slots = self.param_slots()
                    if all(np.isfinite(grad).all() for _, _, grad in slots):
                        self.optimizer.step(slots)
                        updated = self._state_is_finite()
            if updated:
                return loss, int((logits.argmax(axis=1) == yb).sum())
            return math.nan, 0
        finally:
            if not updated:     # an error or a non-finite value: back to the state before
                self._before_step.restore()

    def _state_is_finite(self):
        """True when every parameter, buffer (BatchNorm's running statistics) and
        optimizer state array is finite."""
        return (all(np.isfinite(param).all() for _, param, _ in self.param_slots())
                and all(np.isfinite(value).all() for layer in self.layers
                        for value in layer.buffers.values())
                and all(np.isfinite(value).all() for slot in self.optimizer.state.values()
                        for value in slot.values()))

    def check_state(self, where):
        """Raise :class:`numcnn.errors.NonFiniteModelError` unless the model can be used.

        Every parameter and buffer must be finite, every BatchNorm running
        variance >= 0, and the optimizer's state finite: a NaN set in place, or
        an infinity made by a cast to float32, would otherwise flow through
        BatchNorm and ReLU into confident answers. The message names the layer
        and the array. ``fit``, ``evaluate`` and ``predict`` call it first.
        """
        for layer in self.layers:
            for kind, store in (("parameter", layer.params), ("buffer", layer.buffers)):
                for name, value in store.items():
                    bad = int(value.size - np.count_nonzero(np.isfinite(value)))
                    if bad:
                        raise NonFiniteModelError(
                            f"{where}: {layer.describe()} has {bad} NaN or infinite value(s) in "
                            f"its {kind} {name!r}: the model cannot be used (load a good "
                            f"checkpoint, or train it anew)")
            variance = layer.buffers.get("running_var")
            if variance is not None and (variance < 0).any():
                raise NonFiniteModelError(
                    f"{where}: {layer.describe()} has a negative running variance "
                    f"({float(variance.min()):g}); a variance is >= 0: the model cannot be used")
        if self.optimizer is not None:
            for key, slot in self.optimizer.state.items():
                for name, value in slot.items():
                    if not np.isfinite(value).all():
                        raise NonFiniteModelError(
                            f"{where}: the optimizer's state {key}/{name} holds NaN or infinite "
                            f"values: training cannot go on from it")

    # -- the loop ----------------------------------------------------------------
    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_data=None, shuffle=True, initial_epoch=0, augment=None):
        """Train from epoch ``initial_epoch`` up to (not including) epoch ``epochs``.

        The signature and the epoch semantics are Keras': ``fit(x, y, 32, 10)``
        trains 10 epochs of batches of 32; a second ``fit(..., epochs=1)``
        trains one more epoch; a run resumed after 5 epochs calls
        ``fit(..., epochs=20, initial_epoch=5)`` and trains 15 more, with
        callbacks (schedules, checkpoints) seeing the global epoch indices
        5..19.

        Parameters
        ----------
        x : ndarray (N, C, H, W) float32
        y : ndarray (N,) int, class indices
        batch_size : int
        epochs : int
            Index of the epoch to stop before (the total, counting from 0).
        verbose : int
            1 adds a :class:`numcnn.callbacks.ProgressBar`; 0 is silent.
        callbacks : list of Callback, optional
        validation_data : (x_val, y_val), optional
            Evaluated after each epoch (``val_loss``, ``val_accuracy``).
        shuffle : bool
            Shuffle the training set every epoch with the model's Generator.
        initial_epoch : int
            Index of the first epoch to train.
        augment : callable, optional
            ``augment(x_batch, rng) -> x_batch`` applied to each training batch,
            drawing from the model's Generator.

        Returns
        -------
        History
            The model's history: ``history.history`` holds per-epoch ``loss``,
            ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds``.
        """
        where = "fit"
        self._require_compiled(where)
        self.check_state(where)
        batch_size = validation.positive_int(batch_size, "batch_size", where)
        epochs = validation.non_negative_int(epochs, "epochs", where)
        initial_epoch = validation.non_negative_int(initial_epoch, "initial_epoch", where)
        if verbose not in (0, 1, 2, True, False):
            raise ValueError(f"{where}: verbose must be 0, 1 or 2; got {verbose!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"{where}: augment must be a function (x_batch, rng) -> x_batch; "
                            f"got {type(augment).__name__}")
        if augment is None:
            x = self.check_input(x, where, adopt=True)
        else:  # the layers see augmented batches, which may be smaller (random crops)
            x = self.check_input(x, where, build=False)
            self.check_input(augment(x[:2], np.random.default_rng(0)), "fit: augmented batch",
                             adopt=True)
        validation.class_labels(y, len(x), self.num_classes, f"{where}: y")
        if validation_data is not None:
            x_val, y_val = validation.pair_of_arrays(validation_data, "validation_data", where)
            x_val = self.check_input(x_val, "fit: validation x")
            validation.class_labels(y_val, len(x_val), self.num_classes, "fit: validation y")
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple, type(None))):
            raise TypeError(f"{where}: callbacks must be a list of numcnn Callbacks; got "
                            f"{callbacks!r}")
        callbacks = list(callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"{where}: {type(callback).__name__} is not a numcnn Callback")
        callbacks = [self.history] + ([ProgressBar()] if verbose else []) + callbacks
        starts = batch_starts(len(x), batch_size)
        self._check_batches_for_batchnorm(np.diff(starts).min(), len(x), batch_size, where)
        metrics = ["loss", "accuracy", "lr", "seconds"]
        if validation_data is not None:
            metrics += ["val_loss", "val_accuracy"]
        params = {"epochs": epochs, "initial_epoch": initial_epoch, "steps": len(starts) - 1,
                  "verbose": int(verbose), "batch_size": batch_size, "metrics": metrics}
        for callback in callbacks:
            callback.set_model(self)
            callback.set_params(params)
        self.stop_training = False
        for callback in callbacks:
            callback.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch, {})
            began = time.perf_counter()
            logs = self._train_epoch(x, y, starts, shuffle, augment, callbacks, epoch)
            if logs is None:                # diverged: the last finite weights are back
                break
            for callback in callbacks:
                callback.on_epoch_train_end(epoch, logs)
            if not self._state_is_finite():  # e.g. BatchNorm statistics re-measured by a callback
                self._before_step.restore()
                self._stop_diverged(epoch, None)
                break
            if validation_data is not None:
                scores = self.evaluate(x_val, y_val, batch_size=batch_size)
                logs["val_loss"], logs["val_accuracy"] = scores["loss"], scores["accuracy"]
            logs["seconds"] = time.perf_counter() - began
            self._warn_if_runaway(logs["loss"], epoch)
            self.epoch = epoch + 1
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end({})
        return self.history

    def _check_batches_for_batchnorm(self, smallest, N, batch_size, where):
        """ValueError before any step if a batch of ``smallest`` samples would give a
        BatchNorm one value per channel (a BatchNorm1D, or 1x1 feature maps)."""
        if smallest > 1:
            return
        shapes = [self.input_shape] + list(self.output_shapes[:-1])
        for layer, shape in zip(self.layers, shapes):
            if isinstance(layer, BatchNorm) and int(np.prod(shape[1:])) * smallest < 2:
                raise ValueError(
                    f"{where}: with {N} samples and batch_size {batch_size} a batch holds a "
                    f"single sample, which gives {layer.describe()} one value per channel: its "
                    f"statistics would have no spread. Choose a batch_size of at least 2 that "
                    f"does not leave one sample over")

    def _train_epoch(self, x, y, starts, shuffle, augment, callbacks, epoch):
        """One pass over the training set; the epoch's logs, or None if training diverged."""
        N = len(x)
        order = self.rng.permutation(N) if shuffle else np.arange(N)
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(len(starts) - 1):
            for callback in callbacks:
                callback.on_train_batch_begin(step, {})
            index = order[starts[step]:starts[step + 1]]
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb, self.rng)
            loss, right = self.train_step(xb, yb)
            if not math.isfinite(loss):
                self._stop_diverged(epoch, step)
                return None
            loss_sum += loss * len(index)
            correct += right
            seen += len(index)
            for callback in callbacks:
                callback.on_train_batch_end(step, {"loss": loss_sum / seen,
                                                   "accuracy": correct / seen})
        return {"loss": loss_sum / seen, "accuracy": correct / seen, "lr": self.optimizer.lr}

    def _stop_diverged(self, epoch, step):
        """Stop at ``step`` of ``epoch`` (None: in the callbacks after its last batch)."""
        self.stop_training = True
        self.history.diverged = True
        where, what, before = (
            (f"epoch {epoch + 1}, batch {step + 1}", "the loss, a gradient, ", "that step")
            if step is not None else
            (f"the end of epoch {epoch + 1} (in a callback after its last batch, such as "
             f"BatchNorm re-calibration)", "", "the epoch's last step"))
        self.history.stop_reason = (
            f"training diverged at {where}: {what}a weight, a BatchNorm statistic or the "
            f"optimizer's state was not finite (learning rate {self.optimizer.lr:g}); the "
            f"model holds the weights from before {before}, all finite, and epoch "
            f"{epoch + 1} is not counted")
        warnings.warn(f"fit stopped: {self.history.stop_reason}", DivergenceWarning,
                      stacklevel=3)

    def _warn_if_runaway(self, loss, epoch):
        guess = math.log(max(2, self.num_classes or 2))
        if loss > RUNAWAY_LOSS_FACTOR * guess:
            warnings.warn(f"epoch {epoch + 1}: mean training loss {loss:.4g} is more than "
                          f"{RUNAWAY_LOSS_FACTOR:g} times that of a uniform guess "
                          f"(log {self.num_classes} = {guess:.3f}); the learning rate "
                          f"({self.optimizer.lr:g}) is probably too high. Training goes on",
                          RunawayLossWarning, stacklevel=3)

    # -- evaluation --------------------------------------------------------------
    def _batches(self, x, batch_size):
        for start in range(0, len(x), batch_size):
            yield start, x[start:start + batch_size]

    def evaluate(self, x, y, batch_size=256):
        """Loss and accuracy in evaluation mode: ``{"loss": ..., "accuracy": ...}``.

        The loss is the mean over batches weighted by their size.
        """
        where = "evaluate"
        self._require_compiled(where)
        self.check_state(where)
        batch_size = validation.positive_int(batch_size, "batch_size", where)
        x = self.check_input(x, where)
        validation.class_labels(y, len(x), self.num_classes, f"{where}: y")
        loss_sum, correct = 0.0, 0
        plan = self.plan()
        for start, xb in self._batches(x, batch_size):
            yb = y[start:start + len(xb)]
            with np.errstate(over="ignore", invalid="ignore"):
                logits = plan.forward(xb, training=False)
            self._refuse_non_finite(logits, start, len(x), where)
            loss_sum += self.loss.forward(logits, yb) * len(xb)
            correct += int((logits.argmax(axis=1) == yb).sum())
        return {"loss": loss_sum / len(x), "accuracy": correct / len(x)}

    @staticmethod
    def _refuse_non_finite(outputs, start, total, where):
        """:class:`NonFiniteOutputError` if a row of ``outputs`` (images ``start``...) is not
        finite: no class, loss or accuracy comes from such a model."""
        bad = ~np.isfinite(outputs).reshape(len(outputs), -1).all(axis=1)
        if bad.any():
            raise NonFiniteOutputError(
                f"{where}: the model gives non-finite outputs for {int(bad.sum())} of "
                f"{total} images (first: image {start + int(np.flatnonzero(bad)[0])}); its "
                f"weights or these inputs are out of range, so no class can be given")

    def predict(self, x, batch_size=256):
        """Class probabilities (N, K), float32: the softmax of the logits, in evaluation mode.

        Raises :class:`numcnn.errors.NonFiniteOutputError` if an output is
        not finite (a model that cannot be trusted), naming how many images.
        """
        where = "predict"
        self.check_state(where)
        batch_size = validation.positive_int(batch_size, "batch_size", where)
        x = self.check_input(x, where)
        outputs = []
        plan = self.plan()
        with np.errstate(over="ignore", invalid="ignore"):
            for _, xb in self._batches(x, batch_size):
                logits = plan.forward(xb, training=False)
                outputs.append(softmax(logits.astype(np.float64), axis=1).astype(np.float32))
        probabilities = np.concatenate(outputs)
        self._refuse_non_finite(probabilities, 0, len(x), where)
        return probabilities
