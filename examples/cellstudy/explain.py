"""``--explain``: Grad-CAM heat maps of a trained model over test images, and feature maps."""

from __future__ import annotations

from pathlib import Path

import numcnn
from numcnn import plots

__all__ = ["explain_images"]


def explain_images(model, shown, x, y, classes, folder, columns, title, feature_layer="relu_1",
                   first_name=""):
    """Draw ``gradcam_test.png`` and ``feature_maps_<layer>.png`` in ``folder``; return their paths.

    ``shown`` are the images as a person sees them, ``x`` as the network does
    (mean-subtracted, cropped). The heat shows where the last convolution's
    evidence for the *predicted* class lies; titles give the true and
    predicted class.
    """
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
