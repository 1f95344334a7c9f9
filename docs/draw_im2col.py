"""Draw docs/img/im2col.png: one 3x3 patch becomes one column; one row times one column is one output.

Run from the repository root (or anywhere):  python docs/draw_im2col.py

The numbers in the picture come from numcnn.kernels.reference.im2col, so the
figure shows exactly the layout the library uses: the column matrix has shape
(C*KH*KW, N*OH*OW), row k = (c*KH + i)*KW + j, column n*P + oh*OW + ow.
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, Rectangle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, installed or not
from numcnn.kernels.reference import im2col

HERE = Path(__file__).resolve().parent

ORANGE, BLUE, GREEN, GREY = "#f5a623", "#7fb3e6", "#8fd18f", "#f2f2f2"


def grid(ax, x0, y0, values, fill=None, fontsize=9):
    """Draw a matrix of numbers with its top-left corner at (x0, y0); y grows downwards."""
    rows, columns = values.shape
    for r in range(rows):
        for c in range(columns):
            colour = GREY if fill is None or fill[r, c] is None else fill[r, c]
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=colour,
                                   edgecolor="#888888", linewidth=0.6))
            ax.text(x0 + c + 0.5, y0 + r + 0.5, f"{values[r, c]:g}", ha="center",
                    va="center", fontsize=fontsize)


def arrow(ax, start, end, label, offset=(0, -0.35)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14,
                                 linewidth=1.2, color="#444444"))
    middle = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
    ax.text(*middle, label, ha="center", va="bottom", fontsize=9, style="italic")


def main(path=HERE / "img" / "im2col.png"):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 10, size=(1, 1, 5, 5)).astype(np.float32)   # N=1, C=1, H=W=5
    KH = KW = 3
    OH = OW = 3                                                      # stride 1, no padding
    cols = im2col(x, KH, KW, stride=1, pad=0)                        # (9, 9)
    Wm = np.array([[1, 0, -1, 2, 0, -2, 1, 0, -1]], dtype=np.float32)  # (F=1, C*KH*KW=9)
    y = Wm @ cols                                                    # (1, 9)
    oh, ow = 1, 2
    column = 0 * OH * OW + oh * OW + ow                              # n*P + oh*OW + ow = 5

    fig, ax = plt.subplots(figsize=(10.5, 5.6))
    ax.set_xlim(-0.5, 27)
    ax.set_ylim(13.6, -2.2)
    ax.set_aspect("equal")
    ax.axis("off")

    # The input image, with the patch that output (oh, ow) sees.
    fill = np.full(x.shape[2:], None, dtype=object)
    fill[oh:oh + KH, ow:ow + KW] = ORANGE
    grid(ax, 1, 1, x[0, 0], fill)
    ax.text(3.5, 0.6, "input x, one image, one channel\n(N, C, H, W) = (1, 1, 5, 5)",
            ha="center", va="bottom", fontsize=9)
    ax.text(3.5, 6.3, f"3x3 patch of output (oh, ow) = ({oh}, {ow})", ha="center",
            va="top", fontsize=9, color="#b36b00")

    # The column matrix, with that patch as column 5.
    fill = np.full(cols.shape, None, dtype=object)
    fill[:, column] = ORANGE
    grid(ax, 10, 0, cols, fill)
    ax.text(14.5, -0.3, "cols = im2col(x): shape (C*KH*KW, N*OH*OW) = (9, 9)\n"
            "column n*P + oh*OW + ow", ha="center", va="bottom", fontsize=9)
    for c in range(cols.shape[1]):
        ax.text(10 + c + 0.5, 9.05, str(c), ha="center", va="top", fontsize=7, color="#666666")
    for k in range(cols.shape[0]):
        i, j = divmod(k, KW)
        ax.text(19.2, k + 0.5, f"k={k}  (c=0, i={i}, j={j})", ha="left", va="center",
                fontsize=7, color="#666666")
    arrow(ax, (6.3, 3.5), (9.8, 3.5), "im2col")

    # One weight row times one column gives one output value.
    grid(ax, 0.5, 10.5, Wm, np.full(Wm.shape, BLUE, dtype=object))
    ax.text(5.0, 11.7, "weights Wm = W.reshape(F, C*KH*KW), F = 1", ha="center",
            va="top", fontsize=9)
    fill = np.full(y.shape, None, dtype=object)
    fill[0, column] = GREEN
    grid(ax, 10, 10.5, y, fill)
    ax.text(14.5, 11.7, f"Wm @ cols: (F, N*OH*OW) = (1, 9)\n"
            f"y[{column}] = Wm row . column {column} = {y[0, column]:g}",
            ha="center", va="top", fontsize=9)

    # The row of outputs is the (N, F, OH, OW) map, in another order.
    fill = np.full((OH, OW), None, dtype=object)
    fill[oh, ow] = GREEN
    grid(ax, 23.3, 9.5, y.reshape(OH, OW), fill)
    ax.text(24.8, 9.2, "output (OH, OW)", ha="center", va="bottom", fontsize=9)
    arrow(ax, (19.6, 11.0), (23.0, 11.0), "reshape")

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main())
