"""Pictures with matplotlib (the optional ``plot`` extra: ``pip install numcnn[plot]``).

Every function draws one figure, saves it as PNG to ``path`` and returns the path.
"""
import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("numcnn.plots needs matplotlib: pip install 'numcnn[plot]'") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _integer_locator():
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


def available():
    """True when matplotlib can be imported."""
    try:
        _pyplot()
    except ImportError:
        return False
    return True


def learning_curves(history, path, title="Learning curves"):
    """Loss and accuracy per epoch, training and validation, side by side.

    ``history`` is a :class:`numcnn.callbacks.History` or its ``history`` dict.
    """
    plt = _pyplot()
    logs = getattr(history, "history", history)
    epochs = np.arange(1, len(logs["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, logs[metric], "o-", label=f"training {metric}")
        if f"val_{metric}" in logs:
            ax.plot(epochs, logs[f"val_{metric}"], "s-", label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix(matrix, class_names, path, title="Confusion matrix"):
    """Counts with row-normalised shading (each true class's row sums to 1)."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=9)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=30, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def class_counts(tables, path, title="Samples per class"):
    """Grouped bars: ``tables`` maps a set name to ``{class: count}``."""
    plt = _pyplot()
    names = list(tables)
    classes = sorted({c for table in tables.values() for c in table})
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, name in enumerate(names):
        counts = [tables[name].get(c, 0) for c in classes]
        ax.bar(np.arange(len(classes)) + k * width, counts, width, label=name)
    ax.set_xticks(np.arange(len(classes)) + width * (len(names) - 1) / 2, classes,
                  rotation=20, ha="right")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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


def overlay_grid(images, heatmaps, titles, path, columns=4, alpha=0.6,
                 title="Grad-CAM"):
    """Images (N, C, H, W) with heat maps (N, H, W) in [0, 1] laid over them, in a grid.

    The heat is drawn more opaque where it is hotter, so the image stays visible
    where the map is cold.
    """
    plt = _pyplot()
    n = len(images)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(_display(images[k]))
        ax.imshow(_heat_rgba(heatmaps[k], alpha))
        ax.set_title(titles[k], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def feature_map_grid(maps, path, columns=8, title="Feature maps"):
    """The channels of one layer's activations (F, h, w), one small picture each."""
    plt = _pyplot()
    maps = np.asarray(maps)
    rows = int(np.ceil(len(maps) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(maps):
            ax.imshow(maps[k], cmap="viridis")
            ax.set_title(str(k), fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
