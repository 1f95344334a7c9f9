"""``--predict``: classify new image files with a trained model of a study.

A model folder holds what prediction needs besides the model: ``recipe.json``
(how the training images were made) and ``mean_image.npy`` (what was
subtracted from them). Each image goes through the same steps as the
training images, bit for bit, then the model; its class probabilities are
printed. An image that cannot be read, or whose size differs from the
training images (unless allowed), is named on stderr and the others still run.
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
from .views import predict_views

__all__ = ["load_saved_model", "model_for_predict", "predict_images"]


def model_for_predict(settings, actions, settings_class):
    """``(path, model, recipe settings, recipe dict, mean)`` for ``--predict`` / ``--explain``.

    The model is ``--model``, default ``<out>/seed0/model.npz``. Prints the
    reason and returns None when it cannot be used.
    """
    model_path = Path(actions.model) if actions.model else Path(settings.out) / "seed0" / "model.npz"
    try:
        model, recipe_dict, mean = load_saved_model(model_path)
        recipe = settings_class.from_recipe(recipe_dict)
    except (OSError, ValueError) as error:
        print(f"error: {error}\n(train first, or pass --model PATH to a model.npz whose "
              "folder holds recipe.json and mean_image.npy)", file=sys.stderr)
        return None
    return model_path, model, recipe, recipe_dict, mean


def load_saved_model(model_path):
    """``(model, recipe, mean)`` of a model file and its folder; OSError/ValueError naming the path."""
    model_path = Path(model_path)
    folder = model_path.parent
    try:
        model = numcnn.load(model_path)
        recipe = json.loads((folder / "recipe.json").read_text())
        mean = np.load(folder / "mean_image.npy", allow_pickle=False)
    except OSError as error:
        raise OSError(f"cannot use the model {model_path}: {error}") from None
    except ValueError as error:
        raise ValueError(f"cannot use the model {model_path}: {error}") from None
    return model, recipe, mean


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
