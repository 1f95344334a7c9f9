"""Callbacks: things that happen around the training loop, not inside the maths.

A callback gets ``set_model(model)`` once and then these calls from
:meth:`numcnn.Sequential.fit`: ``on_train_begin()``, ``on_epoch_begin(epoch)``,
``on_epoch_train_end(epoch)`` after the epoch's last batch (before validation),
``on_epoch_end(epoch, logs)`` with ``logs`` holding the epoch's ``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds``, and
``on_train_end()``. Setting ``model.stop_training = True`` ends training after
the current epoch.
"""
import math
import os

import numpy as np


class Callback:
    def set_model(self, model):
        self.model = model

    def on_train_begin(self):
        pass

    def on_epoch_begin(self, epoch):
        pass

    def on_epoch_train_end(self, epoch):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self):
        pass


class History(Callback):
    """Per-epoch logs: ``history.history["val_accuracy"][e]`` and friends.

    ``epochs`` lists the epoch indices (0-based) in the same order. A model keeps
    one History for its whole life, so a resumed run continues the same record.
    """

    def __init__(self):
        self.history = {}
        self.epochs = []
        self.stop_reason = None

    def on_epoch_end(self, epoch, logs):
        self.epochs.append(int(epoch))
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def to_dict(self):
        return {"epochs": self.epochs, "history": self.history, "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, data):
        history = cls()
        history.epochs = [int(e) for e in data.get("epochs", [])]
        history.history = {k: [float(v) for v in vs] for k, vs in data.get("history", {}).items()}
        history.stop_reason = data.get("stop_reason")
        return history


class ModelCheckpoint(Callback):
    """Save the whole model (weights, optimizer state, random state) after every epoch.

    The file is written to a temporary name and then renamed, so an interruption
    while saving never leaves a half-written checkpoint. ``path`` may contain
    ``{epoch}`` (1-based) to keep one file per epoch.
    """

    def __init__(self, path):
        self.path = str(path)

    def on_epoch_end(self, epoch, logs):
        path = self.path.format(epoch=epoch + 1)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.model.save(path)


class BatchNormCalibration(Callback):
    """After each epoch's training, re-estimate BatchNorm statistics on ``x``.

    Runs :meth:`numcnn.Sequential.recalibrate_batchnorm` before validation, so
    validation, checkpoints and the final model all use statistics measured with
    dropout off, as at evaluation. ``x`` is a fixed set of inputs as the model
    sees them at evaluation (a few thousand training images are plenty).
    """

    def __init__(self, x, batch_size=256):
        self.x, self.batch_size = x, batch_size

    def on_epoch_train_end(self, epoch):
        self.model.recalibrate_batchnorm(self.x, batch_size=self.batch_size)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, mode="auto"):
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto'; got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode

    def on_train_begin(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which the logs do not "
                           f"have; available: {sorted(logs)}")
        value = logs[self.monitor]
        improved = (value < self.best - self.min_delta if self.mode == "min"
                    else value > self.best + self.min_delta)
        if improved:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
                self.model.history.stop_reason = (f"early stopping: {self.monitor} did not "
                                                  f"improve for {self.patience} epochs")


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch: ``lr = schedule(epoch)``."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch):
        self.model.optimizer.lr = float(self.schedule(epoch))


def cosine_schedule(base_lr, epochs, min_lr=0.0, warmup=0):
    """``epoch -> lr``: linear warm-up for ``warmup`` epochs, then half a cosine to ``min_lr``."""
    def schedule(epoch):
        if epoch < warmup:
            return base_lr * (epoch + 1) / warmup
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + np.cos(np.pi * progress))
    return schedule
