"""The output folder of a run: one sub-folder per seed, resume, files written atomically.

::

    <out>/results.json, summary.txt         over all seeds
    <out>/seed<S>/model.npz                 the final model (numcnn.load)
    <out>/seed<S>/checkpoint.npz            written after every epoch (for --resume)
    <out>/seed<S>/mean_image.npy            what is subtracted from every image (for --predict)
    <out>/seed<S>/recipe.json               the settings (for --predict and --resume)
    <out>/seed<S>/history.json              per-epoch loss, accuracy, val_*, lr, seconds
    <out>/seed<S>/report_<split>.txt ...    see cellstudy.reports

Every file is written whole or not at all (numcnn's atomic writer). One run
at a time holds a folder: :meth:`RunFolder.locked` takes an operating-system
lock on ``<out>/.lock`` (``filelock``: ``fcntl.flock`` on Unix, ``msvcrt`` on
Windows), which dies with its process, so a killed run never blocks
``--resume``; the holder's process id is written in ``<out>/.lock.holder`` for
the message a second run gets. The run that takes the lock removes the
temporary files a killed run left (``.<name>.<random>.tmp``: no other run can
be writing them). A seed trained anew (no ``--resume``) first removes the
model, checkpoints and reports an earlier run left in its folder
(:meth:`RunFolder.start_afresh`), so that none of them passes for this run's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

import numcnn
from numcnn.files import write_atomically, write_json_atomically

from numcnn.callbacks import previous_path
from numcnn.errors import ModelFileError

from .reports import SPLIT_FILES, split_file
from .settings import SettingsError

__all__ = ["RunFolder", "FolderInUse"]


class FolderInUse(RuntimeError):
    """Another run holds the output folder."""


#: The names numcnn's atomic writer gives its temporary files (tempfile.mkstemp's 8 characters).
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
#: What a seed folder holds of one run, besides recipe.json, mean_image.npy and history.json.
_SPLITS = ("train", "val", "test")


class RunFolder:
    """The folder ``out`` of a study run, and the seed folders in it."""

    def __init__(self, out):
        self.out = Path(out)

    def prepare(self):
        """Make the folder (and its parents); NotADirectoryError if ``out`` is a file."""
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"the output folder {self.out} is a file",
                                     str(self.out))
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    @contextlib.contextmanager
    def locked(self):
        """Hold ``<out>/.lock`` for the block; :class:`FolderInUse` if another process holds it."""
        self.prepare()
        lock = FileLock(self.out / ".lock", timeout=0)
        holder = self.out / ".lock.holder"
        try:
            lock.acquire()
        except Timeout:
            try:
                who = holder.read_text(encoding="utf-8").strip() or "unknown"
            except OSError:
                who = "unknown"
            raise FolderInUse(f"the output folder {self.out} is in use by another run "
                              f"(process {who}); wait for it, or use another --out") from None
        try:
            holder.write_text(f"{os.getpid()}\n", encoding="utf-8")
            self._remove_temporaries()
            yield self
        finally:
            lock.release()                  # the operating system releases it if we die


    def _remove_temporaries(self):
        """Remove what a killed run's atomic writes left: only the lock holder writes here."""
        for folder in [self.out, *sorted(self.out.glob("seed*"))]:
            if folder.is_dir():
                for path in folder.iterdir():
                    if _TEMPORARY.match(path.name) and path.is_file():
                        path.unlink(missing_ok=True)

    def start_afresh(self, folder):
        """Before a seed is trained anew (no ``--resume``): remove its earlier run's results.

        An earlier run's model.npz, checkpoints and reports would otherwise sit
        beside this run's recipe.json and mean_image.npy: ``--predict`` would
        use that model, and a later ``--resume`` would continue (or only
        re-evaluate) it as if this run had made it, even if it diverged.
        """
        for name in ("checkpoint.npz", previous_path("checkpoint.npz")):
            (folder / name).unlink(missing_ok=True)
        _remove_results(folder)

    def discard_seed(self, seed, reason):
        """A seed with no result after all (its model's outputs are not finite).

        Its model.npz and reports are removed (the checkpoints stay), ``reason``
        is said on stderr, and ``{"seed": S, "diverged": reason}`` returned, as
        for a seed whose training diverged.
        """
        _remove_results(self.out / f"seed{seed}")
        print(f"seed {seed}: {reason}", file=sys.stderr)
        return {"seed": seed, "diverged": reason}

    def seed_folder(self, seed):
        """``<out>/seed<S>``, made if needed."""
        folder = self.out / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_json(self, path, document):
        """``document`` as indented JSON at ``path``, atomically."""
        return write_json_atomically(path, document)

    def write_text(self, path, text):
        """``text`` at ``path``, atomically."""
        return write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))

    def save_array(self, path, array):
        """One ``.npy`` at ``path``, atomically."""
        return write_atomically(path, lambda handle: np.save(handle, array))

    def save_trained(self, folder, model):
        """After ``fit``: write history.json, and model.npz unless training diverged.

        Returns None, or for a diverged seed ``{"seed": S, "diverged": reason}``
        (said on stderr): a seed with no result, which the summary names.
        """
        self.write_json(folder / "history.json", model.history.to_dict())
        if model.history.diverged:
            print(f"seed {model.seed}: {model.history.stop_reason}", file=sys.stderr)
            return {"seed": model.seed, "diverged": model.history.stop_reason}
        model.save(folder / "model.npz")
        return None

    def resume(self, folder, epochs):
        """The model to continue with ``--resume``: ``(model, note)``, or ``(None, "new")``.

        A complete ``model.npz`` (``epochs`` trained) is only re-evaluated; else
        the newest readable checkpoint is continued: ``checkpoint.npz``, or the
        one before it (``checkpoint.previous.npz``) if the newest is damaged.
        A damaged file is named in a warning and left in place.
        """
        final = folder / "model.npz"
        model = _load_or_warn(final)
        if model is not None and model.epoch >= epochs:
            return model, f"complete ({model.epoch} epochs): not retrained, only evaluated"
        for checkpoint in (folder / "checkpoint.npz", Path(previous_path(folder / "checkpoint.npz"))):
            model = _load_or_warn(checkpoint)
            if model is not None:
                return model, f"resumed from {checkpoint.name} after epoch {model.epoch}"
        return None, "new"

    @staticmethod
    def check_resumable(folder, settings, val_digest=None):
        """Refuse to resume a seed that was trained with other settings or another split.

        The split is compared when both sides know it (a digest given, and a
        recipe.json that recorded it): estimated cell groups that changed would
        otherwise move former validation images into training without a word.
        """
        saved = folder / "recipe.json"
        if not saved.exists():
            return
        try:
            recipe = json.loads(saved.read_text(encoding="utf-8"))
            before = type(settings).from_recipe(recipe).training_settings()
        except (ValueError, TypeError, KeyError) as error:
            warnings.warn(f"--resume: {saved} is damaged ({error}), so this run's settings "
                          f"cannot be compared with the saved ones; it is rewritten from this "
                          f"run's settings", stacklevel=2)
            return
        if val_digest is not None and recipe.get("validation_split") not in (None, val_digest):
            raise SettingsError(f"--resume: {folder} held out other validation images than this "
                                f"run does (were the cell groups recomputed?); training on would "
                                f"train on former validation images: use another --out")
        now = settings.training_settings()
        changed = [f"{key}: {before[key]!r} -> {now[key]!r}" for key in now if before[key] != now[key]]
        if changed:
            raise SettingsError(f"--resume: {folder} was trained with other settings "
                                f"({'; '.join(changed)}); use the same ones or another --out")


def _remove_results(folder):
    """Remove a seed folder's model.npz and reports (report, confusion, predicted, curves)."""
    (folder / "model.npz").unlink(missing_ok=True)
    (folder / "learning_curves.png").unlink(missing_ok=True)
    for kind in SPLIT_FILES:
        for split in _SPLITS:
            split_file(folder, kind, split).unlink(missing_ok=True)


def _load_or_warn(path):
    """``numcnn.load(path)``, or None if there is no file or (with a warning) it is damaged."""
    if not path.exists():
        return None
    try:
        return numcnn.load(path)
    except (ModelFileError, OSError) as error:
        warnings.warn(f"--resume: {path} cannot be used ({error}); trying the state before it",
                      stacklevel=3)
        return None
