"""What is the network looking at? Grad-CAM, input-gradient saliency, feature maps.

All three run the model in evaluation mode (BatchNorm on running statistics,
no dropout) and use the layers' own ``backward`` passes: nothing here is
specific to one architecture. They return arrays; :mod:`numcnn.plots` draws them.
"""
import numpy as np
from skimage.transform import resize

from .layers import Conv2D


def _layer_index(model, layer):
    """Accept a layer object, its name, its index, or None (the last Conv2D)."""
    layers = model.layers
    if layer is None:
        convs = [i for i, item in enumerate(layers) if isinstance(item, Conv2D)]
        if not convs:
            raise ValueError("the model has no Conv2D layer")
        return convs[-1]
    if isinstance(layer, (int, np.integer)):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"layer index {layer} is out of range for {len(layers)} layers")
        return int(layer) % len(layers)
    for i, item in enumerate(layers):
        if item is layer or item.name == layer:
            return i
    names = [item.name for item in layers]
    raise ValueError(f"no layer {layer!r} in the model; its layers are {names}")


def _check_images(model, x):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    return model.check_input(x, "explain")


def _forward_keeping(model, x, index):
    """Forward pass in evaluation mode; returns (scores, activation of layer ``index``)."""
    activation = None
    for i, layer in enumerate(model.layers):
        x = layer.forward(x, training=False, checked=True)
        if i == index:
            activation = x
    return x, activation


def _score_gradient(scores, class_index):
    """Upstream gradient that selects one class score per image (a one-hot row)."""
    N, K = scores.shape
    if class_index is None:
        classes = scores.argmax(axis=1)
    else:
        classes = np.broadcast_to(np.asarray(class_index), (N,)).astype(np.int64)
        if classes.min() < 0 or classes.max() >= K:
            raise ValueError(f"class_index must lie in [0, {K}); got {class_index}")
    dscores = np.zeros_like(scores)
    dscores[np.arange(N), classes] = 1.0
    return dscores, classes


def _backward_to(model, dy, stop_after):
    """Backward through the scoring layers down to (not through) layer ``stop_after``."""
    layers = model.layers
    for i in range(len(layers) - 1, stop_after, -1):
        dy = layers[i].backward(dy)
    return dy


def grad_cam(model, x, layer=None, class_index=None):
    """Grad-CAM (Selvaraju et al., 2017) heat maps for a batch of images.

    Parameters
    ----------
    model : Sequential
    x : ndarray (N, C, H, W) or (C, H, W)
        Preprocessed images, as the model sees them.
    layer : Conv2D, str, int or None
        The convolution whose output feature maps are weighted; default the last Conv2D.
    class_index : int or array of N ints, optional
        The class to explain; default the predicted class of each image.

    Returns
    -------
    dict with
        ``heatmap`` (N, H, W) in [0, 1], the map resized to the input;
        ``cam`` (N, h, w), the map at the layer's resolution, before scaling;
        ``weights`` (N, F), the channel weights ``alpha``;
        ``classes`` (N,), the class explained.

    Notes
    -----
    With ``A`` the layer's output (N, F, h, w) and ``y_c`` the class score
    (the logit, before softmax): ``alpha_f = mean_{i,j} dy_c / dA_f[i, j]``
    and ``cam = ReLU(sum_f alpha_f A_f)``. Each map is divided by its maximum.
    """
    x = _check_images(model, x)
    index = _layer_index(model, layer)
    scores, activation = _forward_keeping(model, x, index)
    dscores, classes = _score_gradient(scores, class_index)
    gradient = _backward_to(model, dscores, index)                  # (N, F, h, w)
    if gradient.ndim != 4:
        raise ValueError("grad_cam needs a layer with (N, F, h, w) feature maps; "
                         f"{model.layers[index].describe()} outputs {gradient.shape}")
    weights = gradient.mean(axis=(2, 3))                            # (N, F)
    cam = np.maximum((weights[:, :, None, None] * activation).sum(axis=1), 0)  # (N, h, w)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    scaled = cam / np.where(peak > 0, peak, 1)[:, None, None]
    H, W = x.shape[2:]
    heatmap = np.stack([resize(m, (H, W), order=1, mode="edge", anti_aliasing=False)
                        for m in scaled]).astype(np.float32)
    return {"heatmap": heatmap, "cam": cam, "weights": weights, "classes": classes}


def saliency(model, x, class_index=None):
    """Input-gradient saliency (Simonyan et al., 2014): ``d y_c / d x``.

    Returns
    -------
    dict with ``gradient`` (N, C, H, W), the raw gradient of the class score;
    ``map`` (N, H, W), its absolute value maximised over channels; ``classes``.
    """
    x = _check_images(model, x)
    scores, _ = _forward_keeping(model, x, -1)
    dscores, classes = _score_gradient(scores, class_index)
    gradient = _backward_to(model, dscores, -1)
    return {"gradient": gradient, "map": np.abs(gradient).max(axis=1), "classes": classes}


def feature_maps(model, image, layer):
    """Activations (F, h, w) of ``layer`` for one image (C, H, W), in evaluation mode."""
    x = _check_images(model, image)
    if len(x) != 1:
        raise ValueError(f"feature_maps takes one image; got a batch of {len(x)}")
    index = _layer_index(model, layer)
    _, activation = _forward_keeping(model, x, index)
    return activation[0]
