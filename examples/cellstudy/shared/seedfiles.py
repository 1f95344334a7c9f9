"""The files beside a model, and how they are checked against it and against each other.

A seed folder holds, beside ``model.npz``, what prediction needs:
``mean_image.npy`` (subtracted from every image) and ``recipe.json`` (how the
images were made, and the class names in label order). Neither can be told
wrong by looking at it alone: a mean image scaled by 255, or a class list in
another order, still has the right shape and gives a confident, wrong class
for every image. So when a run writes them, ``recipe.json`` also records

- ``mean_image``: the shape, dtype and SHA-256 of the mean image's values;
- ``data_identity``: per split, the number of images and a hash of their
  names and bytes (:mod:`cellstudy.shared.datacheck`), for ``--resume``;
- ``recipe_checksum``: the SHA-256 of the rest of the recipe, so that an edit
  (a reordered class list, another crop) is seen.

:func:`check_model_folder` checks the three files against each other before
``--predict``, ``--explain`` or ``transfer.py`` use them. A run folder written
before these records existed is checked as far as its files allow (shapes,
dtype, finite values, the range of the mean image), with a warning that the
rest cannot be verified.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np

from .settings import SettingsError

__all__ = ["describe_array", "recipe_checksum", "seal", "verify_checksum", "check_model_folder",
           "ModelFolderError"]


class ModelFolderError(SettingsError):
    """The files beside a model do not fit it, or each other (exit status 2)."""


def describe_array(array):
    """``{"shape", "dtype", "sha256"}`` of an array: what recipe.json records of mean_image.npy."""
    array = np.ascontiguousarray(array)
    return {"shape": list(array.shape), "dtype": str(array.dtype),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def recipe_checksum(recipe):
    """The SHA-256 of a recipe's content, its own ``recipe_checksum`` left out."""
    content = {key: value for key, value in recipe.items() if key != "recipe_checksum"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def seal(recipe, mean, data_identity=None):
    """``recipe`` with the records of the mean image and the data, and its checksum."""
    recipe = {**recipe, "mean_image": describe_array(mean)}
    if data_identity is not None:
        recipe["data_identity"] = data_identity
    recipe["recipe_checksum"] = recipe_checksum(recipe)
    return recipe


def verify_checksum(recipe, name="recipe.json"):
    """True if ``recipe`` carries a checksum that matches; False if it carries none.

    Recipes without ``settings_version`` (numcnn 0.1's) carry none by construction.

    Raises
    ------
    ModelFolderError
        The checksum does not match: the recipe was changed after it was written.
    """
    if not isinstance(recipe, dict) or "recipe_checksum" not in recipe \
            or "settings_version" not in recipe:
        return False
    if recipe["recipe_checksum"] != recipe_checksum(recipe):
        raise ModelFolderError(f"{name} was changed after the run wrote it (its "
                               f"recipe_checksum does not match its content)")
    return True


def check_model_folder(model, recipe, mean, settings_class, classes, folder):
    """Check a model, its recipe.json and its mean_image.npy against each other.

    Parameters
    ----------
    model : Sequential
    recipe : object
        What ``recipe.json`` holds (JSON: anything).
    mean : ndarray
        What ``mean_image.npy`` holds.
    settings_class : type
        :class:`cellstudy.bloodcells.command.BloodCellSettings` or
        :class:`cellstudy.pbc.command.PBCSettings`.
    classes : (tuple of str, bool)
        The study's class names and whether the recipe must list exactly them,
        in that order (True), or may list any two or more of them, in any
        order (False: a PBC model trained on some of its classes).
    folder : Path
        The model's folder (named in the messages).

    Returns
    -------
    (settings, list of str)
        The recipe's settings and its class names in label order.

    Raises
    ------
    ModelFolderError
        Naming the file and what does not fit.
    """
    where = folder / "recipe.json"
    try:
        settings = settings_class.from_recipe(recipe)
    except SettingsError as error:
        raise ModelFolderError(f"{where}: {error}") from None
    sealed = verify_checksum(recipe, where)
    names, exact = classes
    listed = recipe.get("classes", list(names) if exact else list(getattr(settings, "classes", ())))
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise ModelFolderError(f"{where}: classes is {listed!r}; expected the list of class "
                               f"names in label order")
    if exact and listed != list(names):
        raise ModelFolderError(f"{where} lists the classes {listed}; this study's models "
                               f"have {list(names)}, in that order")
    unknown = [name for name in listed if name not in names]
    if unknown or len(set(listed)) != len(listed) or len(listed) < 2:
        raise ModelFolderError(f"{where} lists the classes {listed}; expected two or more "
                               f"distinct names from {list(names)}")
    if model.num_classes is not None and model.num_classes != len(listed):
        raise ModelFolderError(f"{folder / 'model.npz'} gives {model.num_classes} class "
                               f"scores, but {where} lists {len(listed)} classes")
    if model.input_shape is not None and tuple(model.input_shape) != settings.input_shape:
        raise ModelFolderError(f"{folder / 'model.npz'} takes inputs of shape "
                               f"{tuple(model.input_shape)}; {where} describes "
                               f"{settings.input_shape}")
    _check_mean(mean, recipe.get("mean_image"), settings, folder / "mean_image.npy")
    if not sealed or "mean_image" not in recipe:
        warnings.warn(f"{where} was written by an earlier version of the study: it records no "
                      f"checksum of itself or of mean_image.npy, so only their shapes, types "
                      f"and ranges could be checked", stacklevel=3)
    return settings, listed


def _check_mean(mean, record, settings, where):
    """mean_image.npy: float32, the shape of the recipe's images, finite, as recorded."""
    if mean.dtype != np.float32:
        raise ModelFolderError(f"{where} holds {mean.dtype} values; the study writes float32")
    if mean.shape != settings.image_shape:
        raise ModelFolderError(f"{where} has shape {mean.shape}; the recipe's images have "
                               f"{settings.image_shape}")
    if not np.isfinite(mean).all():
        raise ModelFolderError(f"{where} holds NaN or infinite values")
    if isinstance(record, dict):
        if describe_array(mean) != record:
            raise ModelFolderError(f"{where} is not the mean image this model was trained "
                                   f"with: its values differ from those recipe.json "
                                   f"recorded (sha256 {str(record.get('sha256'))[:12]}...)")
    elif settings.colour_norm == "none" and (mean.min() < 0 or mean.max() > 1):
        raise ModelFolderError(f"{where} holds values from {mean.min():.3g} to "
                               f"{mean.max():.3g}; the mean of images in [0, 1] lies in [0, 1]")
