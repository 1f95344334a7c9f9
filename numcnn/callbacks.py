"""Callbacks: what happens around the training loop, not inside the maths.

A callback gets ``set_model(model)`` and ``set_params(params)`` once per
``fit``, then these calls, each with a ``logs`` dict, as in Keras:

- ``on_train_begin(logs)``, ``on_train_end(logs)``;
- ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, where the
  end-of-epoch ``logs`` hold ``loss``, ``accuracy``, ``lr``, ``seconds`` and,
  with validation data, ``val_loss`` and ``val_accuracy``;
- ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``,
  the latter with the running ``loss`` and ``accuracy`` of the epoch so far;
- ``on_epoch_train_end(epoch, logs)``, numcnn's own: after the epoch's last
  batch and before validation (:class:`BatchNormCalibration` uses it).

``epoch`` is the global epoch index (0-based): a run resumed with
``fit(..., initial_epoch=5)`` starts at 5. ``params`` holds ``epochs``,
``initial_epoch``, ``steps`` (batches per epoch), ``verbose`` and ``metrics``
(the names the epoch logs will have). Setting ``model.stop_training = True``
ends training after the current epoch.
"""
import math
import numbers

import numpy as np

from . import validation
from .snapshot import Snapshot

__all__ = ["Callback", "History", "ProgressBar", "ModelCheckpoint", "previous_path", "EarlyStopping",
           "LearningRateScheduler", "BatchNormCalibration", "recalibrate_batchnorm",
           "cosine_schedule"]


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    model = None
    params = None

    def set_model(self, model):
        """Called by ``fit`` before training: the model being trained."""
        self.model = model

    def set_params(self, params):
        """Called by ``fit`` before training: ``epochs``, ``steps``, ``metrics``, ..."""
        self.params = params

    def on_train_begin(self, logs=None):
        """Before the first epoch."""

    def on_train_end(self, logs=None):
        """After the last epoch (also after an early stop)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Before the first batch of ``epoch``."""

    def on_epoch_train_end(self, epoch, logs=None):
        """After the last batch of ``epoch``, before validation."""

    def on_epoch_end(self, epoch, logs=None):
        """After ``epoch``, with its ``logs``."""

    def on_train_batch_begin(self, batch, logs=None):
        """Before the training step on batch ``batch`` (0-based within the epoch)."""

    def on_train_batch_end(self, batch, logs=None):
        """After the training step on batch ``batch``, with the running ``loss`` and ``accuracy``."""


class History(Callback):
    """Per-epoch logs: ``history.history["val_accuracy"][e]`` and friends.

    ``epochs`` lists the epoch indices (0-based) in the same order. A model keeps
    one History for its whole life (it is saved with the model), so a resumed
    run continues the same record. ``stop_reason`` says why the last ``fit``
    ended early (None if it ran all its epochs); ``diverged`` is True when it
    ended because training stopped being finite.
    """

    def __init__(self):
        self.history = {}
        self.epochs = []
        self.stop_reason = None
        self.diverged = False

    def on_train_begin(self, logs=None):
        self.stop_reason = None
        self.diverged = False

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(int(epoch))
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))

    def to_dict(self):
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return {"epochs": self.epochs, "history": self.history, "stop_reason": self.stop_reason,
                "diverged": self.diverged}

    @classmethod
    def from_dict(cls, data):
        """Rebuild a History from :meth:`to_dict`'s output."""
        history = cls()
        history.epochs = [int(e) for e in data.get("epochs", [])]
        history.history = {k: [float(v) for v in vs] for k, vs in data.get("history", {}).items()}
        history.stop_reason = data.get("stop_reason")
        history.diverged = bool(data.get("diverged", False))
        return history


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss and accuracy; ``fit(verbose=1)`` adds it.

    ``tqdm.auto`` picks a notebook widget in Jupyter and a text bar elsewhere.
    """

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.params["steps"],
                        desc=f"Epoch {epoch + 1}/{self.params['epochs']}", unit="batch",
                        leave=True, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['accuracy']:.4f}")

    def on_epoch_end(self, epoch, logs=None):
        shown = {"loss": "loss", "acc": "accuracy", "val_loss": "val_loss",
                 "val_acc": "val_accuracy"}
        self.bar.set_postfix({label: f"{logs[key]:.4f}" for label, key in shown.items()
                              if key in logs})
        self.bar.close()

    def on_train_end(self, logs=None):
        bar = getattr(self, "bar", None)
        if bar is not None:
            bar.close()                      # an epoch that ended early


class ModelCheckpoint(Callback):
    """Save the whole model (weights, optimizer state, random state) after every epoch.

    The file is written by numcnn's atomic writer (a temporary file, then a
    rename), so an interruption while saving never leaves a half-written
    checkpoint. ``path`` may contain ``{epoch}`` (1-based) to keep one file per
    epoch; its folder is made if needed.

    With ``keep_previous=True`` the checkpoint it replaces is kept, renamed to
    :func:`previous_path` (``checkpoint.npz`` -> ``checkpoint.previous.npz``),
    so that if the newest file is ever damaged, the one before it is still there.
    A file at ``path`` that is itself damaged (a run resumed from the previous
    one because of it) is not kept: it is overwritten, and the previous one stays.
    """

    def __init__(self, path, keep_previous=False):
        import os
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: path must be a file name (str or Path); "
                            f"got {path!r}")
        self.path = str(path)
        self.keep_previous = bool(keep_previous)

    def on_epoch_end(self, epoch, logs=None):
        import os
        path = self.path.format(epoch=epoch + 1)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.keep_previous and os.path.exists(path) and _is_whole_archive(path):
            os.replace(path, previous_path(path))
        self.model.save(path)


def _is_whole_archive(path):
    """True when ``path`` is a zip archive (a .npz) whose every member passes its CRC check."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        return False


def previous_path(path):
    """Where ``ModelCheckpoint(keep_previous=True)`` keeps the checkpoint before ``path``."""
    import os
    root, extension = os.path.splitext(str(path))
    return f"{root}.previous{extension}"


def recalibrate_batchnorm(model, x, batch_size=256):
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
    model : Sequential
    x : ndarray (N, C, H, W)
        Inputs as the model sees them at evaluation (e.g. training images
        without augmentation).
    batch_size : int
    """
    from .layers import BatchNorm, Dropout

    batch_size = validation.positive_int(batch_size, "batch_size", "recalibrate_batchnorm")
    x = model.check_input(x, "recalibrate_batchnorm")
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    momenta = [layer.momentum for layer in norms]
    try:
        for k, start in enumerate(range(0, len(x), batch_size)):
            for layer in norms:
                layer.momentum = 1.0 / (k + 1)   # running = mean over batches 0..k
            h = x[start:start + batch_size]
            for layer in model.layers:
                if isinstance(layer, Dropout):
                    continue                     # evaluation: no dropout
                h = layer.forward(h, training=isinstance(layer, BatchNorm), checked=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


class BatchNormCalibration(Callback):
    """After each epoch's training, re-estimate BatchNorm statistics on ``x``.

    Runs :func:`recalibrate_batchnorm` before validation, so validation,
    checkpoints and the final model all use statistics measured with dropout
    off, as at evaluation. ``x`` is a fixed set of inputs as the model sees them
    at evaluation (a few thousand training images are plenty).
    """

    def __init__(self, x, batch_size=256):
        self.x = x
        self.batch_size = validation.positive_int(batch_size, "batch_size", "BatchNormCalibration")

    def on_epoch_train_end(self, epoch, logs=None):
        recalibrate_batchnorm(self.model, self.x, batch_size=self.batch_size)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs, e.g. ``"val_loss"`` or ``"val_accuracy"``;
        checked when training starts.
    min_delta : float
        Smallest change that counts as an improvement.
    patience : int
        Epochs without improvement before stopping.
    mode : {"auto", "min", "max"}
        Whether smaller or larger is better ("auto": larger for accuracies).
    restore_best_weights : bool
        When training ends, put back the weights (and BatchNorm statistics) of
        the best epoch, as Keras does.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=3, mode="auto",
                 restore_best_weights=False):
        if not isinstance(monitor, str):
            raise TypeError(f"EarlyStopping: monitor must be the name of a metric such as "
                            f"'val_loss'; got {monitor!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto'; got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0; got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be a finite number >= 0; "
                             f"got {min_delta!r}")
        self.monitor, self.min_delta, self.patience, self.mode = monitor, min_delta, patience, mode
        self.restore_best_weights = bool(restore_best_weights)
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        metrics = (self.params or {}).get("metrics")
        if metrics is not None and self.monitor not in metrics:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the epoch logs "
                             f"will not have; they have {sorted(metrics)}")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.best_epoch = None
        self._best_weights = Snapshot(self.model) if self.restore_best_weights else None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which the logs do not "
                           f"have; available: {sorted(logs)}")
        value = logs[self.monitor]
        improved = (value < self.best - self.min_delta if self.mode == "min"
                    else value > self.best + self.min_delta)
        if improved:
            self.best, self.wait, self.best_epoch = value, 0, epoch
            if self._best_weights is not None:
                self._best_weights.capture()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
                self.model.history.stop_reason = (f"early stopping: {self.monitor} did not "
                                                  f"improve for {self.patience} epochs")

    def on_train_end(self, logs=None):
        if self._best_weights is not None and self._best_weights.captured:
            self._best_weights.restore()


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch: ``lr = schedule(epoch)``.

    ``epoch`` is the global epoch index, so a resumed run continues the
    schedule where it stopped. A schedule may reach 0 but never a negative or
    non-finite value: that raises ValueError naming the epoch.
    """

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function epoch -> lr; "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) \
                or lr < 0:
            raise ValueError(f"LearningRateScheduler: the schedule gave lr = {lr!r} for epoch "
                             f"{epoch}; a learning rate must be a finite number >= 0")
        self.model.optimizer.lr = float(lr)


def cosine_schedule(base_lr, epochs, min_lr=0.0, warmup=0):
    """``epoch -> lr``: linear warm-up for ``warmup`` epochs, then half a cosine to ``min_lr``."""
    def schedule(epoch):
        if epoch < warmup:
            return base_lr * (epoch + 1) / warmup
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + np.cos(np.pi * progress))
    return schedule
