"""``--predict``: classify new image files with a trained model of a study.

A model folder holds what prediction needs besides the model: ``recipe.json``
(how the training images were made) and ``mean_image.npy`` (what was
subtracted from them); both are checked against the model and each other
first (:func:`cellstudy.seedfiles.check_model_folder`). Each image goes
through the same steps as the training images, bit for bit, then the model;
its class probabilities are printed. An image that cannot be read, or whose
size differs from the training images (unless allowed), is named on stderr
and the others still run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import numcnn
from numcnn.data import ImageError
from numcnn.errors import NonFiniteOutputError

from .cli import EXIT
from .seedfiles import ModelFolderError, check_model_folder
from .views import predict_views

__all__ = ["model_path", "load_saved_model", "model_for_predict", "predict_images"]


def model_path(settings, actions):
    """The model of ``--predict`` and ``--explain``: ``--model``, default ``<out>/seed0/model.npz``."""
    return Path(actions.model) if actions.model else Path(settings.out) / "seed0" / "model.npz"


def model_for_predict(settings, actions, settings_class, classes):
    """``(path, model, recipe settings, class names, mean)`` for ``--predict`` / ``--explain``.

    The model is ``--model``, default ``<out>/seed0/model.npz``; ``classes``
    as :func:`cellstudy.seedfiles.check_model_folder` takes them. Prints the
    reason and returns None when it cannot be used.
    """
    path = model_path(settings, actions)
    try:
        model, recipe, names, mean = load_saved_model(path, settings_class, classes)
    except (OSError, ValueError) as error:
        print(f"error: {error}\n(train first, or pass --model PATH to a model.npz whose "
              "folder holds recipe.json and mean_image.npy)", file=sys.stderr)
        return None
    return path, model, recipe, names, mean


def load_saved_model(path, settings_class, classes):
    """``(model, recipe settings, class names, mean)`` of a model file and its folder.

    The three files are checked against each other
    (:func:`cellstudy.seedfiles.check_model_folder`). OSError, or
    :class:`cellstudy.seedfiles.ModelFolderError` (a ValueError: exit status
    2 under the guard), naming the model and the file at fault.
    """
    path = Path(path)
    folder = path.parent
    try:
        model = numcnn.load(path)
        try:
            recipe = json.loads((folder / "recipe.json").read_text(encoding="utf-8"))
        except ValueError as error:      # not UTF-8, not JSON
            raise ValueError(f"{folder / 'recipe.json'} is damaged ({error})") from None
        mean = np.load(folder / "mean_image.npy", allow_pickle=False)
        if not isinstance(mean, np.ndarray):
            raise ValueError(f"{folder / 'mean_image.npy'} is a .npz archive, not one array")
        settings, names = check_model_folder(model, recipe, mean, settings_class, classes, folder)
    except OSError as error:
        raise OSError(f"cannot use the model {path}: {error}") from None
    except ValueError as error:          # also UnicodeDecodeError, SettingsError
        raise ModelFolderError(f"cannot use the model {path}: {error}") from None
    return model, settings, names, mean


def predict_images(paths, model, classes, make_input, views, description):
    """Print the class probabilities of each image; return the exit status.

    Parameters
    ----------
    paths : list of str
    model : Sequential
    classes : list of str
    make_input : callable
        ``make_input(path) -> (x, note)``: the (1, C, H, W) input the model
        sees, as training made it; raises ImageError, OSError or ValueError
        naming what is wrong; ``note`` is a warning to print, or None.
    views : {"symmetries", "none"}
    description : str
        What the model and its preprocessing are (printed first).

    Returns
    -------
    int
        0 when every image was classified, 1 when some could not be.
    """
    print(description)
    failed = 0
    for name in paths:
        try:
            x, note = make_input(name)
            probabilities = predict_views(model, x, views)[0]
        except (ImageError, OSError, ValueError, NonFiniteOutputError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            failed += 1
            continue
        if note:
            print(f"warning: {name}: {note}", file=sys.stderr)
        best = int(probabilities.argmax())
        listed = "  ".join(f"{c} {p:.3f}" for c, p in zip(classes, probabilities))
        print(f"{name}: {classes[best]}  ({listed})")
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be classified", file=sys.stderr)
    return EXIT.PREDICT_UNREADABLE if failed else EXIT.DONE
