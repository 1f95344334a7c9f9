"""A copy of a model's state to go back to: best weights, last finite weights.

One mechanism serves both uses:

- ``EarlyStopping(restore_best_weights=True)`` captures the weights of the best
  epoch and restores them when training ends;
- training captures the state before every update and, if an update leaves a
  weight that is not finite, restores it (weights, running statistics and the
  optimizer's state and step counter, so that nothing of the bad step remains).

The copies live in arrays allocated once and reused, so capturing costs one
memory copy and no allocation.
"""
import numpy as np

__all__ = ["Snapshot"]


class Snapshot:
    """Copies of a model's parameters and buffers (and, optionally, its optimizer's state).

    Parameters
    ----------
    model : Sequential
    optimizer : bool
        Also copy the optimizer's state arrays and step counter (the optimizer
        the model has when :meth:`capture` is called).

    Examples
    --------
    >>> snapshot = Snapshot(model)        # doctest: +SKIP
    >>> snapshot.capture()                # doctest: +SKIP
    >>> ...                               # doctest: +SKIP
    >>> snapshot.restore()                # doctest: +SKIP
    """

    def __init__(self, model, optimizer=False):
        self.model = model
        self.with_optimizer = bool(optimizer)
        self._arrays = {}
        self._optimizer_keys = None
        self._iterations = None
        self.captured = False

    def _live_arrays(self):
        """``{name: array}`` of everything the snapshot copies, as the model holds it now."""
        arrays = {}
        for i, layer in enumerate(self.model.layers):
            for name, value in layer.params.items():
                arrays[f"{i}.param.{name}"] = value
            for name, value in layer.buffers.items():
                arrays[f"{i}.buffer.{name}"] = value
        optimizer = self.model.optimizer
        if self.with_optimizer and optimizer is not None:
            for key, slot in optimizer.state.items():
                for name, value in slot.items():
                    arrays[f"optim.{key}/{name}"] = value
        return arrays

    def capture(self):
        """Copy the current state into the snapshot (reusing its arrays)."""
        live = self._live_arrays()
        for name, value in live.items():
            copy = self._arrays.get(name)
            if copy is None or copy.shape != value.shape or copy.dtype != value.dtype:
                self._arrays[name] = value.copy()
            else:
                np.copyto(copy, value)
        for name in set(self._arrays) - set(live):
            del self._arrays[name]
        optimizer = self.model.optimizer
        if self.with_optimizer and optimizer is not None:
            self._optimizer_keys = {key: list(slot) for key, slot in optimizer.state.items()}
            self._iterations = optimizer.iterations
        self.captured = True

    def restore(self):
        """Put the captured state back into the model (and its optimizer)."""
        if not self.captured:
            raise RuntimeError("Snapshot.restore: nothing was captured")
        for i, layer in enumerate(self.model.layers):
            for store, kind in ((layer.params, "param"), (layer.buffers, "buffer")):
                for name in store:
                    saved = self._arrays[f"{i}.{kind}.{name}"]
                    if store[name].shape == saved.shape and store[name].dtype == saved.dtype:
                        np.copyto(store[name], saved)
                    else:
                        store[name] = saved.copy()
        optimizer = self.model.optimizer
        if self.with_optimizer and optimizer is not None:
            state = {}
            for key, names in self._optimizer_keys.items():
                state[key] = {name: self._arrays[f"optim.{key}/{name}"].copy()
                              for name in names}
            optimizer.state = state
            optimizer.iterations = self._iterations

    def is_finite(self):
        """True when every captured array holds only finite values."""
        return all(np.isfinite(value).all() for value in self._arrays.values())
