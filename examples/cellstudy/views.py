"""What the network sees at evaluation: the centre crop, one view or the mean of eight.

Training takes a random crop of each (mean-subtracted) image; evaluation takes
the centre one. With square crops the class probabilities can be averaged over
the 8 symmetries of the square (four quarter turns, each mirrored or not):
every orientation the network met in training.
"""

from __future__ import annotations

import numpy as np

from numcnn.data import centre_crop, predict_symmetric

__all__ = ["evaluation_view", "predict_views", "predict_probabilities"]


def evaluation_view(x, input_size, crop=True):
    """The centre ``input_size`` square of each image (``crop=False``: the whole image)."""
    return centre_crop(x, input_size) if crop else x


def predict_views(model, x, views, batch_size=256):
    """Class probabilities: one view (``"none"``) or the mean over the 8 symmetries."""
    if views == "symmetries":
        return predict_symmetric(model, x, batch_size=batch_size)
    return model.predict(x, batch_size=batch_size)


def predict_probabilities(model, x, views, input_size, crop=True, batch_size=256):
    """Class probabilities of uncropped images, a batch at a time.

    (The centre crop of a whole set at once would copy it.)
    """
    return np.concatenate([predict_views(model, evaluation_view(x[i:i + batch_size], input_size,
                                                                crop), views, batch_size)
                           for i in range(0, len(x), batch_size)])
