"""The blood-cell study's side commands: the class-count tables, ``--predict``, ``--explain``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path


from numcnn.data import centre_crop, preprocess_image, read_rgb_image
from numcnn.datasets import bloodcells

from . import reports
from .cli import EXIT, printable
from .colour import normalise_colour
from .explain import explain_images
from .labels_csv import LabelsFileError, read_original_labels
from .predict import model_for_predict, predict_images
from .settings import BloodCellSettings
from .stain import StainCrop

__all__ = ["show_class_counts", "predict", "explain"]


def show_class_counts(settings, data_dir, out, say, plot):
    """The study's two tables: raw labels of the original smears, augmented TRAIN/TEST.

    ``labels.csv`` only feeds the first table: a missing or unreadable one is a warning.
    """
    try:
        originals = read_original_labels(bloodcells.labels_csv_path(data_dir))
    except (FileNotFoundError, LabelsFileError, OSError) as error:
        warnings.warn(f"no table of the original labels: {error}", stacklevel=2)
    else:                           # (printing is not reading labels.csv: a closed stdout is not its fault)
        say("\nRaw samples per class of the original smears (dataset-master/labels.csv):")
        say(originals.summary())
    counts = {split: bloodcells.count_per_class(split, data_dir) for split in ("TRAIN", "TEST")}
    say("\nAugmented samples per class (dataset2-master/images):")
    say(reports.count_table(counts, bloodcells.CLASSES))
    if plot:
        from numcnn import plots
        path = out / "class_counts.png"
        plots.class_counts(counts, path=path, title="Augmented samples per class")
        say(f"bar chart: {path}")


def _input_maker(recipe, mean, input_shape, allow_other_size):
    """``path -> (x, note)``: one JPEG made exactly as the training images were."""
    crop, factor, size = recipe.crop or None, recipe.factor, recipe.input_size
    transform = StainCrop(crop) if crop else None

    def make_input(path):
        if not Path(path).is_file():
            raise OSError("no such file")
        image = read_rgb_image(path)
        note = None
        if image.shape != bloodcells.IMAGE_SHAPE:
            what = (f"a {image.shape[1]}x{image.shape[0]} image; the model was trained on "
                    f"{bloodcells.IMAGE_SHAPE[1]}x{bloodcells.IMAGE_SHAPE[0]} frames")
            if image.shape[:2] == bloodcells.IMAGE_SHAPE[1::-1]:
                what += " (this one is portrait: turned by 90 degrees)"
            if not allow_other_size or not crop:
                raise ValueError(f"{what}; "
                                 + ("--allow-other-size classifies it anyway (the stain crop "
                                    "still cuts a window of the trained size)" if crop else
                                    "without a stain crop only that size can work"))
            note = f"{what}; classified anyway (--allow-other-size)"
        x = preprocess_image(image, transform, factor)[None]         # (1, 3, H', W')
        if recipe.colour_norm == "image":
            x = normalise_colour(x)
        if x.shape[1:] != mean.shape:
            raise ValueError(f"image gives shape {x.shape[1:]} after preprocessing; the "
                             f"model's mean image has {mean.shape}")
        x = x - mean
        if crop:
            x = centre_crop(x, size)
        if input_shape is not None and x.shape[1:] != tuple(input_shape):
            raise ValueError(f"image gives input {x.shape[1:]}, the model expects "
                             f"{tuple(input_shape)}")
        return x, note

    return make_input


def predict(settings, actions):
    """``--predict``: print class probabilities for each image; return the exit status."""
    loaded = model_for_predict(settings, actions, BloodCellSettings, (bloodcells.CLASSES, True))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    square = model.input_shape is not None and model.input_shape[1] == model.input_shape[2]
    views = settings.tta if actions.tta_explicit else recipe.tta
    if views == "symmetries" and not square:
        print(f"error: --tta symmetries needs a model of square inputs; {model_path} takes "
              f"{model.input_shape}", file=sys.stderr)
        return EXIT.BAD_INPUT
    description = (f"model {model_path} ({model.epoch} epochs); preprocessing: stain crop "
                   f"{recipe.crop or 'none'}, factor {recipe.factor}"
                   + (f", centre {recipe.input_size}x{recipe.input_size}" if recipe.crop else "")
                   + ("; mean over the 8 symmetric views" if views == "symmetries" else "; one view"))
    make_input = _input_maker(recipe, mean, model.input_shape, actions.allow_other_size)
    return predict_images(actions.predict, model, classes, make_input, views, description)


def explain(settings, actions):
    """``--explain``: Grad-CAM grid of TEST images per class, and feature maps; the exit status."""
    loaded = model_for_predict(settings, actions, BloodCellSettings, (bloodcells.CLASSES, True))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    try:
        data_dir = bloodcells.locate(settings.data)
    except (OSError, ValueError) as error:
        print(f"error: cannot explain: {error}", file=sys.stderr)
        return EXIT.BAD_INPUT
    from numcnn import plots
    if not plots.available():
        print("error: --explain draws pictures and needs matplotlib: pip install 'numcnn[plot]'",
              file=sys.stderr)
        return EXIT.BAD_INPUT
    crop, size = recipe.crop or None, recipe.input_size
    test = bloodcells.load_data("TEST", data_dir, StainCrop(crop) if crop else None, recipe.factor,
                                max_per_class=actions.explain_per_class, seed=0,
                                cache_dir=settings.cache_dir, progress=False)
    shown = centre_crop(test.x, size) if crop else test.x             # what a person sees
    seen = normalise_colour(test.x) if recipe.colour_norm == "image" else test.x
    x = centre_crop(seen - mean, size) if crop else seen - mean       # what the network sees
    grid, features, correct = explain_images(
        model, shown, x, test.y, classes, model_path.parent, actions.explain_per_class,
        f"Grad-CAM on the last Conv2D, TEST images ({model_path})",
        first_name=printable(Path(test.paths[0]).name))
    print(f"Grad-CAM of {len(x)} TEST images ({correct} predicted right): {grid}")
    print(f"feature maps: {features}")
    return EXIT.DONE


