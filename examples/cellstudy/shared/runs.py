"""The run of a study: its output folder, one sub-folder per seed, resume, the seeds in turn.

::

    <out>/results.json, summary.txt         over all seeds
    <out>/seed<S>/model.npz                 the final model (numcnn.load)
    <out>/seed<S>/checkpoint.npz            written after every epoch (for --resume)
    <out>/seed<S>/mean_image.npy            what is subtracted from every image (for --predict)
    <out>/seed<S>/recipe.json               the settings (for --predict and --resume), with
                                            records of the mean image and the data, and a
                                            checksum (cellstudy.shared.seedfiles)
    <out>/seed<S>/history.json              per-epoch loss, accuracy, val_*, lr, seconds
    <out>/seed<S>/report_<split>.txt ...    see cellstudy.shared.reports

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
A seed continued with ``--resume`` goes on only with the same data, recipe,
seed and network (:meth:`RunFolder.resume`); ``--epochs`` may change (see
there). The output folder never lies inside the data (:func:`keep_out_of_data`).

A study script defines how to load its images, its network and how one seed
is trained (the story); :func:`run_seeds` trains the seeds one after the
other, rewriting results.json and summary.txt after each, so that an
interrupted run keeps what it finished, and turns the outcome into the exit
status. :func:`speaker`, :func:`plots_wanted` and :func:`announce` are the
small things every run says and asks.
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
from numcnn.callbacks import previous_path
from numcnn.errors import ModelFileError, NonFiniteOutputError
from numcnn.files import write_atomically, write_json_atomically

from .command import EXIT
from .reports import SPLIT_FILES, split_file, write_results, write_text
from .seedfiles import seal, verify_checksum
from .settings import SettingsError

__all__ = ["RunFolder", "FolderInUse", "keep_out_of_data", "run_seeds", "speaker",
           "plots_wanted", "announce"]


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
        self._continued = {}       # seed folder -> the --epochs changes of its model so far

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
            try:
                holder.write_text(f"{os.getpid()}\n", encoding="utf-8")
            except OSError as error:            # e.g. a full disk: name the file
                raise OSError(error.errno, error.strerror, str(holder)) from None
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
        """``text`` at ``path``, atomically (file names that are not UTF-8 kept as their bytes)."""
        return write_text(path, text)

    def save_array(self, path, array):
        """One ``.npy`` at ``path``, atomically."""
        return write_atomically(path, lambda handle: np.save(handle, array))

    def write_seed_files(self, folder, recipe, mean, data_identity=None):
        """``mean_image.npy`` and ``recipe.json`` of a seed, before its training.

        recipe.json gets the records :func:`cellstudy.shared.seedfiles.seal` adds (the
        mean image's and the data's, a checksum), and, for a model continued
        with another ``--epochs``, ``epochs_changed`` (see :meth:`resume`).
        """
        changed = self._continued.get(folder)
        if changed:
            recipe = {**recipe, "epochs_changed": changed}
        self.save_array(folder / "mean_image.npy", mean)
        self.write_json(folder / "recipe.json", seal(recipe, mean, data_identity))

    def continuation(self, folder):
        """``{"epochs_changed": [...]}`` for a seed's results if its model changed --epochs, else {}."""
        changed = self._continued.get(folder)
        return {"epochs_changed": changed} if changed else {}

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

    def resume(self, folder, settings, expected, data_identity=None, val_digest=None):
        """The model to continue with ``--resume``: ``(model, note)``, or ``(None, "new")``.

        A complete ``model.npz`` (``settings.epochs`` trained) is only
        re-evaluated; else the newest readable checkpoint is continued:
        ``checkpoint.npz``, or the one before it (``checkpoint.previous.npz``)
        if the newest is damaged. A damaged file is named in a warning and left
        in place.

        Nothing goes on from a state it does not fit, whatever is on disk:
        :meth:`check_resumable` compares the recipe, the data and the
        validation split with the saved ones, and the model found must be this
        seed's (its ``seed``) and have the architecture of ``expected`` (this
        run's network, built but untrained). ``--epochs`` may differ from the
        saved recipe's: a model is trained further (or less far) to the new
        count, its remaining epochs following the learning-rate schedule of the
        new count, which recipe.json and results.json then record under
        ``epochs_changed``; a model that already has more epochs than
        ``--epochs`` is refused.

        Raises
        ------
        SettingsError
            Naming what differs.
        """
        model, note, path = _newest_model(folder, settings.epochs)
        if model is not None and model.seed != expected.seed:
            raise SettingsError(f"--resume: {path} holds the model of seed {model.seed}, not of "
                                f"seed {expected.seed} (were seed folders swapped or copied?); "
                                f"use another --out")
        previous = self.check_resumable(folder, settings, val_digest, data_identity)
        changed = previous.get("epochs_changed") if previous else None
        changed = list(changed) if isinstance(changed, list) else []
        if model is not None:
            _check_same_network(model, expected, path)
            if model.epoch > settings.epochs:
                raise SettingsError(f"--resume: {path} has {model.epoch} epochs, more than "
                                    f"--epochs {settings.epochs}; use --epochs "
                                    f"{model.epoch} or more, or another --out")
            before = previous.get("epochs") if previous else None
            if before is not None and before != settings.epochs and model.epoch > 0:
                changed.append({"after_epoch": model.epoch, "epochs_before": before,
                                "epochs_now": settings.epochs})
                note += (f"; trained so far for --epochs {before}: the remaining epochs "
                         f"follow the schedule of --epochs {settings.epochs} (recorded in "
                         f"recipe.json and results.json as epochs_changed)")
        self._continued[folder] = changed if model is not None else []
        return model, note

    @staticmethod
    def check_resumable(folder, settings, val_digest=None, data_identity=None):
        """Refuse to resume a seed that was trained with other settings or data; its old recipe.

        The training settings (:attr:`Settings.TRAINING`) and the backend must
        be the saved ones. The split is compared when both sides know it (a
        digest given, and a recipe.json that recorded it): estimated cell
        groups that changed would otherwise move former validation images into
        training without a word. The data (``data_identity``, of
        :func:`cellstudy.shared.datacheck.data_identity`) likewise, split by split;
        a recipe.json that did not record it gets a warning.

        Returns
        -------
        dict or None
            The saved recipe, or None when there is none or it is damaged
            (a warning says so: it cannot be compared).
        """
        saved = folder / "recipe.json"
        if not saved.exists():
            return None
        try:
            recipe = json.loads(saved.read_text(encoding="utf-8"))
            before = type(settings).from_recipe(recipe)
            verify_checksum(recipe, saved)
        except (ValueError, TypeError, KeyError) as error:
            warnings.warn(f"--resume: {saved} is damaged ({error}), so this run's settings "
                          f"cannot be compared with the saved ones; it is rewritten from this "
                          f"run's settings", stacklevel=2)
            return None
        then, now = before.training_settings(), settings.training_settings()
        if "backend" in recipe:               # the kernels round differently
            then["backend"], now["backend"] = before.backend, settings.backend
        changed = [f"{key}: {then[key]!r} -> {now[key]!r}" for key in now if then[key] != now[key]]
        if changed:
            raise SettingsError(f"--resume: {folder} was trained with other settings "
                                f"({'; '.join(changed)}); use the same ones or another --out")
        if data_identity is not None:
            _check_same_data(folder, recipe.get("data_identity"), data_identity)
        if val_digest is not None and recipe.get("validation_split") not in (None, val_digest):
            raise SettingsError(f"--resume: {folder} held out other validation images than this "
                                f"run does (were the cell groups recomputed?); training on would "
                                f"train on former validation images: use another --out")
        return recipe


def keep_out_of_data(settings, data_dirs):
    """Refuse an ``--out`` or a cache folder inside a data folder (SettingsError, exit 2).

    The run would write its seed folders (or the cache its files) among the
    images, and every later run on that data would read them as a class
    folder, or fail on it.
    """
    from numcnn.data import default_cache_dir
    places = [("--out", settings.out),
              ("--cache-dir" if settings.cache_dir else "the cache folder ($NUMCNN_CACHE)",
               settings.cache_dir or default_cache_dir())]
    for data_dir in data_dirs:
        data_dir = Path(data_dir).resolve()
        for flag, place in places:
            place = Path(place).resolve()
            if place == data_dir or data_dir in place.parents:
                raise SettingsError(f"{flag} {place} lies inside the data folder {data_dir}: "
                                    f"its files would be read as data by every later run; "
                                    f"choose a folder outside it")


def run_seeds(run, seeds, train, study):
    """Train every seed in turn, rewriting results.json and summary.txt after each.

    Parameters
    ----------
    run : RunFolder
        The locked output folder.
    seeds : list of int
    train : callable
        ``train(seed)``: the seed's metrics for results.json, or
        ``{"seed": S, "diverged": reason}`` when its training diverged.
    study : cellstudy.shared.reports.StudyRecord
        What results.json says of the study besides its seeds.

    Returns
    -------
    int
        The exit status: 3 when some seed's training diverged, or its trained
        model's outputs are not finite (the others still ran), else 0.
    """
    results = []
    for seed in seeds:
        try:
            results.append(train(seed))
        except NonFiniteOutputError as error:      # finite weights, but outputs that are not
            results.append(run.discard_seed(seed, f"the trained model cannot be evaluated: "
                                                  f"{error}"))
        summary = write_results(run, study, results)
    print("\n" + summary)
    print(f"\nresults: {run.out / 'results.json'}, {run.out / 'summary.txt'}")
    return EXIT.DIVERGED if any("diverged" in result for result in results) else EXIT.DONE


def speaker(settings):
    """``say(*parts)``: print, unless ``--quiet``."""
    def say(*parts):
        if not settings.quiet:
            print(*parts, flush=True)
    return say


def plots_wanted(settings):
    """True unless ``--no-plots``, or matplotlib is missing."""
    from numcnn import plots
    return not settings.no_plots and plots.available()


def announce(run, data_dir, say, note=""):
    """The first line of a run: numcnn's version and backend, the data, the output."""
    say(f"numcnn {numcnn.__version__}, backend {numcnn.get_backend()}; data {data_dir}; "
        f"output {run.out}" + (f"\n({note})" if note else ""))


def _check_same_data(folder, then, now):
    """SettingsError naming the first split whose images differ from the recorded ones."""
    if not isinstance(then, dict):
        warnings.warn(f"--resume: {folder / 'recipe.json'} does not record which images it was "
                      f"trained on (an earlier version of the study wrote it), so the data "
                      f"cannot be compared; it is recorded from now on", stacklevel=3)
        return
    for split, identity in now.items():
        before = then.get(split)
        if before != identity:
            images = f"{before['images']} images" if isinstance(before, dict) else "no record"
            raise SettingsError(f"--resume: {folder} was trained on other data: its "
                                f"{split.upper()} split held {images} (fingerprint "
                                f"{str((before or {}).get('sha256'))[:12]}...), this run's "
                                f"holds {identity['images']} ({identity['sha256'][:12]}...); "
                                f"use the same --data or another --out")


def _architecture(model):
    """Each layer's class and the shapes of its parameters and buffers."""
    return [(type(layer).__name__,
             {f"{kind}/{name}": tuple(value.shape)
              for kind, store in (("param", layer.params), ("buffer", layer.buffers))
              for name, value in store.items()})
            for layer in model.layers]


def _check_same_network(model, expected, path):
    """SettingsError if ``model`` (read from ``path``) has not the architecture of ``expected``."""
    have, want = _architecture(model), _architecture(expected)
    shapes = (tuple(model.input_shape or ()), tuple(expected.input_shape or ()))
    if have != want or (model.input_shape is not None and shapes[0] != shapes[1]):
        where = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have),
                                                                                    len(want)))
        describe = lambda layers: (f"{layers[where][0]} {layers[where][1]}"    # noqa: E731
                                   if where < len(layers) else "no layer")
        detail = (f"inputs {shapes[0]}, this run's network takes {shapes[1]}" if have == want
                  else f"layer {where} is {describe(have)}, this run's network has "
                       f"{describe(want)} ({len(have)} and {len(want)} layers)")
        raise SettingsError(f"--resume: {path} is a model of another architecture ({detail}); "
                            f"use the settings it was trained with, or another --out")


def _newest_model(folder, epochs):
    """``(model, note, path)``: a complete model.npz, else the newest readable checkpoint."""
    final = folder / "model.npz"
    model = _load_or_warn(final)
    if model is not None and model.epoch >= epochs:
        return model, f"complete ({model.epoch} epochs): not retrained, only evaluated", final
    for checkpoint in (folder / "checkpoint.npz", Path(previous_path(folder / "checkpoint.npz"))):
        model = _load_or_warn(checkpoint)
        if model is not None:
            return model, f"resumed from {checkpoint.name} after epoch {model.epoch}", checkpoint
    return None, "new", None


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
                      stacklevel=4)
        return None
