"""``--predict`` and ``--explain``: a trained model of a study on new images, or on its TEST images.

A model folder holds what prediction needs besides the model: ``recipe.json``
(how the training images were made) and ``mean_image.npy`` (what was
subtracted from them); both are checked against the model and each other
first (:func:`cellstudy.shared.seedfiles.check_model_folder`). Each image goes
through the same steps as the training images, bit for bit, then the model;
its class probabilities are printed. An image that cannot be read, or whose
size differs from the training images (unless allowed), is named on stderr
and the others still run.

``--explain`` (:func:`explain_images`) draws Grad-CAM heat maps of the model
over test images, and the feature maps of its first convolution.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import numcnn
from numcnn.data import ImageError
from numcnn.errors import NonFiniteOutputError

from .command import EXIT
from .evaluation import predict_views
from .seedfiles import ModelFolderError, check_model_folder

__all__ = ["model_path", "load_saved_model", "model_for_predict", "predict_images",
           "explain_images"]


def model_path(settings, actions):
    """The model of ``--predict`` and ``--explain``: ``--model``, default ``<out>/seed0/model.npz``."""
    return Path(actions.model) if actions.model else Path(settings.out) / "seed0" / "model.npz"


def model_for_predict(settings, actions, settings_class, classes):
    """``(path, model, recipe settings, class names, mean)`` for ``--predict`` / ``--explain``.

    The model is ``--model``, default ``<out>/seed0/model.npz``; ``classes``
    as :func:`cellstudy.shared.seedfiles.check_model_folder` takes them. Prints the
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
    (:func:`cellstudy.shared.seedfiles.check_model_folder`). OSError, or
    :class:`cellstudy.shared.seedfiles.ModelFolderError` (a ValueError: exit status
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


def explain_images(model, shown, x, y, classes, folder, columns, title, feature_layer="relu_1",
                   first_name=""):
    """Draw ``gradcam_test.png`` and ``feature_maps_<layer>.png`` in ``folder``; return their paths.

    ``shown`` are the images as a person sees them, ``x`` as the network does
    (mean-subtracted, cropped). The heat shows where the last convolution's
    evidence for the *predicted* class lies; titles give the true and
    predicted class.
    """
    from numcnn import plots
    cam = numcnn.explain.grad_cam(model, x)
    titles = [f"true {classes[t][:3]} / pred {classes[p][:3]}" for t, p in zip(y, cam["classes"])]
    grid = Path(folder) / "gradcam_test.png"
    plots.overlay_grid(shown, cam["heatmap"], titles, path=grid, columns=columns, title=title)
    maps = numcnn.explain.feature_maps(model, x[0], feature_layer)
    features = Path(folder) / f"feature_maps_{feature_layer}.png"
    plots.feature_map_grid(maps, path=features,
                           title=f"{feature_layer} feature maps of {first_name} ({classes[y[0]]})")
    correct = int((cam["classes"] == y).sum())
    return grid, features, correct
