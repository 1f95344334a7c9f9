"""Print the im2col memory table of docs/im2col.md (Markdown), computed, not typed.

Run:  python docs/im2col_memory.py

The blood-cell network has three 3x3 convolutions (padding 1, stride 1) with
3 -> 32 -> 64 -> 128 channels; each block ends in MaxPool2D(2), which halves
H and W (rounding down). The column matrix of one conv holds
N * C * KH * KW * OH * OW numbers (C = the conv's *input* channels), 4 bytes
each in float32. Conv2D builds it for at most COLS_BUDGET_BYTES at a time
(numcnn/layers/columns.py), in chunks of whole images, in one reused buffer.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from numcnn.kernels.reference import conv_output_size
from numcnn.layers.columns import COLS_BUDGET_BYTES

N = 64                         # batch size
KH = KW = 3
CHANNELS = (3, 32, 64, 128)    # input channels of conv 1, 2, 3, then conv 3's output
INPUTS = ((64, 64), (60, 80), (120, 160))
MiB = 2 ** 20


def rows():
    for H, W in INPUTS:
        h, w = H, W
        for layer, C in enumerate(CHANNELS[:-1], start=1):
            OH, OW = conv_output_size(h, KH, 1, 1), conv_output_size(w, KW, 1, 1)
            per_image = C * KH * KW * OH * OW * 4                 # bytes of one image's columns
            full = N * per_image
            chunk = max(1, min(N, COLS_BUDGET_BYTES // per_image))  # what Conv2D does
            yield (f"{H}x{W}", f"conv{layer}", f"({C}, {h}, {w})", C * KH * KW, OH * OW,
                   full / MiB, chunk, chunk * per_image / MiB)
            h, w = OH // 2, OW // 2                               # MaxPool2D(2)


def main():
    print(f"Batch N = {N}, float32, COLS_BUDGET_BYTES = {COLS_BUDGET_BYTES // MiB} MiB\n")
    print("| input | conv | conv input (C, H, W) | rows C*KH*KW | OH*OW | whole batch, MiB "
          "| images per chunk | buffer, MiB |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for size, conv, shape, K, P, full, chunk, buffer in rows():
        print(f"| {size} | {conv} | {shape} | {K} | {P} | {full:.1f} | {chunk} | {buffer:.1f} |")


if __name__ == "__main__":
    main()
