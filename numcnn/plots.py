"""Pictures with matplotlib (the optional ``plot`` extra: ``pip install numcnn[plot]``).

Every function draws into the Axes you give it (``ax=``), or into a new
Figure of its own, optionally saves the figure as PNG (``path=``, written
whole or not at all), and returns the Figure. Nothing here touches matplotlib's backend or pyplot's list of open
figures: a new Figure is made with ``matplotlib.figure.Figure``, which a script
can save and a notebook displays, and which is freed like any object.

>>> fig = confusion_matrix([[5, 1], [0, 4]], ["cat", "dog"])   # doctest: +SKIP
>>> fig = learning_curves(model.history, path="curves.png")    # doctest: +SKIP
"""
import numpy as np

__all__ = ["available", "learning_curves", "confusion_matrix", "class_counts",
           "overlay_grid", "feature_map_grid"]


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("numcnn.plots needs matplotlib: pip install 'numcnn[plot]'") from None


def available():
    """True when matplotlib can be imported."""
    try:
        _matplotlib()
    except ImportError:
        return False
    return True


def _new_figure(figsize, rows=1, columns=1):
    """A Figure not managed by pyplot, with a grid of Axes (a 2-D array)."""
    _matplotlib()
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, columns, squeeze=False)


def _finish(fig, path, own, dpi=100, title=None):
    """Title and layout for a Figure made here (a caller's Figure is left alone); save it."""
    if own:
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    if path is not None:
        from .files import write_atomically
        write_atomically(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))
    return fig


def learning_curves(history, ax=None, path=None, title="Learning curves"):
    """Loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : History or dict
        A :class:`numcnn.callbacks.History` or its ``history`` dict.
    ax : pair of Axes, optional
        Where to draw the loss and the accuracy; default a new Figure.
    path : str or Path, optional
        Save the figure there (PNG).

    Returns
    -------
    matplotlib.figure.Figure
    """
    logs = getattr(history, "history", history)
    own = ax is None
    if own:
        fig, axes = _new_figure((10, 4), 1, 2)
        axes = axes[0]
    else:
        axes = list(ax)
        if len(axes) != 2:
            raise ValueError(f"learning_curves: ax must be a pair of Axes (loss, accuracy); "
                             f"got {len(axes)}")
        fig = axes[0].figure
    from matplotlib.ticker import MaxNLocator
    epochs = np.arange(1, len(logs["loss"]) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, logs[metric], "o-", label=f"training {metric}")
        if f"val_{metric}" in logs:
            axis.plot(epochs, logs[f"val_{metric}"], "s-", label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return _finish(fig, path, own, title=title)


def confusion_matrix(matrix, class_names, ax=None, path=None, title="Confusion matrix"):
    """A confusion matrix (rows: true class) drawn by scikit-learn's ``ConfusionMatrixDisplay``.

    Each cell shows its count; the shading is the row-normalised rate (each
    true class's row sums to 1), so classes of different sizes compare.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    matrix = np.asarray(matrix)
    own = ax is None
    if own:
        fig, axes = _new_figure((5.5, 5))
        ax = axes[0, 0]
    display = ConfusionMatrixDisplay(matrix, display_labels=list(class_names))
    display.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d",
                 xticks_rotation=30)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    display.im_.set_data(rates)                 # shade by rate, label by count
    display.im_.set_clim(0, 1)
    for (i, j), text in np.ndenumerate(display.text_):
        text.set_text(f"{matrix[i, j]}\n{rates[i, j]:.0%}")
        text.set_color("white" if rates[i, j] > 0.5 else "black")
        text.set_fontsize(9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _finish(ax.figure, path, own)


def class_counts(tables, ax=None, path=None, title="Samples per class"):
    """Grouped bars: ``tables`` maps a set name to ``{class: count}``. Returns the Figure."""
    names = list(tables)
    classes = sorted({c for table in tables.values() for c in table})
    width = 0.8 / max(1, len(names))
    own = ax is None
    if own:
        fig, axes = _new_figure((8, 4))
        ax = axes[0, 0]
    for k, name in enumerate(names):
        counts = [tables[name].get(c, 0) for c in classes]
        ax.bar(np.arange(len(classes)) + k * width, counts, width, label=name)
    ax.set_xticks(np.arange(len(classes)) + width * (len(names) - 1) / 2, classes,
                  rotation=20, ha="right")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    return _finish(ax.figure, path, own)


def _display(image_chw):
    """An NCHW sample (possibly mean-subtracted) as an HWC picture in [0, 1]."""
    image = np.asarray(image_chw, dtype=np.float64).transpose(1, 2, 0)
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _heat_rgba(heatmap, alpha):
    """A jet-coloured heat map whose opacity grows with the heat (cold parts stay clear)."""
    from matplotlib import colormaps
    rgba = colormaps["jet"](np.clip(heatmap, 0, 1))
    rgba[..., 3] = alpha * np.clip(heatmap, 0, 1)
    return rgba


def _grid(count, columns, cell, ax):
    """A flat list of at least ``count`` Axes: the given ones, or a new grid."""
    if ax is None:
        rows = int(np.ceil(count / columns))
        fig, axes = _new_figure((cell[0] * columns, cell[1] * rows), rows, columns)
        return fig, list(axes.flat), True
    axes = list(np.asarray(ax, dtype=object).flat)
    if len(axes) < count:
        raise ValueError(f"{len(axes)} Axes given for {count} pictures")
    return axes[0].figure, axes, False


def overlay_grid(images, heatmaps, titles, ax=None, path=None, columns=4, alpha=0.6,
                 title="Grad-CAM"):
    """Images (N, C, H, W) with heat maps (N, H, W) in [0, 1] laid over them, in a grid.

    The heat is drawn more opaque where it is hotter, so the image stays visible
    where the map is cold. ``ax``: at least N Axes (any shape), or a new Figure.
    Returns the Figure.
    """
    n = len(images)
    fig, axes, own = _grid(n, columns, (2.6, 2.8), ax)
    for k, axis in enumerate(axes):
        axis.axis("off")
        if k >= n:
            continue
        axis.imshow(_display(images[k]))
        axis.imshow(_heat_rgba(heatmaps[k], alpha))
        axis.set_title(titles[k], fontsize=8)
    return _finish(fig, path, own, dpi=80, title=title)


def feature_map_grid(maps, ax=None, path=None, columns=8, title="Feature maps"):
    """The channels of one layer's activations (F, h, w), one small picture each. Returns the Figure."""
    maps = np.asarray(maps)
    fig, axes, own = _grid(len(maps), columns, (1.4, 1.4), ax)
    for k, axis in enumerate(axes):
        axis.axis("off")
        if k < len(maps):
            axis.imshow(maps[k], cmap="viridis")
            axis.set_title(str(k), fontsize=6)
    return _finish(fig, path, own, dpi=80, title=title)
