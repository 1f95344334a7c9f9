"""The PBC study's side commands: the class-count table and ``--predict``."""

from __future__ import annotations

from pathlib import Path

from numcnn.data import centre_crop, preprocess_image, read_rgb_image
from numcnn.datasets import pbc

from . import reports
from .cli import EXIT
from .colour import normalise_colour
from .predict import model_for_predict, predict_images
from .settings import PBCSettings

__all__ = ["show_class_counts", "predict"]


def show_class_counts(data_dir, say):
    """Images per class and split, from splits.csv."""
    counts = {split: pbc.class_counts(split, data_dir) for split in pbc.SPLITS}
    say("\nImages per class and split (splits.csv):")
    say(reports.count_table(counts, pbc.CLASSES))


def predict(settings, actions):
    """``--predict``: class probabilities of 128x128 PBC-style images; the exit status."""
    loaded = model_for_predict(settings, actions, PBCSettings, (pbc.CLASSES, False))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    factor = pbc.IMAGE_SIZE // recipe.size
    shape = (pbc.IMAGE_SIZE, pbc.IMAGE_SIZE, 3)

    def make_input(path):
        if not Path(path).is_file():
            raise OSError("no such file")
        image = read_rgb_image(path)
        if image.shape != shape:
            raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image; the model was trained on "
                             f"{shape[1]}x{shape[0]} images (the central 200x200 of a PBC "
                             f"original, resized): bring it to that size first")
        x = preprocess_image(image, None, factor)[None]
        if recipe.colour_norm == "image":
            x = normalise_colour(x)
        return centre_crop(x - mean, recipe.input_size), None

    views = settings.tta if actions.tta_explicit else recipe.tta
    description = (f"model {model_path} ({model.epoch} epochs); preprocessing: {recipe.size}x"
                   f"{recipe.size} by block means, centre {recipe.input_size}x{recipe.input_size}"
                   + ("; mean over the 8 symmetric views" if views == "symmetries" else "; one view"))
    return predict_images(actions.predict, model, classes, make_input, views, description)
