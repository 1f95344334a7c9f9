"""Where does the time go? One training step timed and measured layer by layer."""
import time

from .layers import Conv2D


def _im2col_bytes(layer):
    """Bytes of the column matrix a Conv2D built in its last forward (0 for other layers)."""
    return int(layer.cols_nbytes) if isinstance(layer, Conv2D) else 0


def profile(model, x, y, print_fn=print):
    """Time one forward and one backward pass per layer, in training mode.

    The step computes what ``fit``'s does (forward with ``training=True``, the
    loss, backward) but applies no update, and runs the layers one by one, as
    ``Sequential.forward`` does: ``fit`` runs the model's plan, whose fused
    steps and direct 3x3 convolutions make its step faster than this one on
    the numba backend (``numcnn.plan``). Afterwards the model is as it was:
    BatchNorm's running statistics and the random generator (which Dropout
    draws from) are restored; only the ``grads`` dicts hold this step's gradients.

    Parameters
    ----------
    model : Sequential, compiled
    x : ndarray (N, C, H, W) float32
    y : ndarray (N,) int
    print_fn : callable or None
        Where the table goes (``None`` to stay silent).

    Returns
    -------
    dict
        ``layers``: one dict per layer with ``name``, ``type``, ``forward_ms``,
        ``backward_ms``, ``output_shape``, ``output_bytes``, ``im2col_bytes`` and
        ``params``; ``loss_ms``; ``total_ms`` (everything, loss included);
        ``totals`` with the summed columns.
    """
    if model.loss is None:
        raise RuntimeError("profile: call compile(optimizer, loss) first")
    x = model.check_input(x, "profile")
    layers = model.layers
    saved = [{k: v.copy() for k, v in layer.buffers.items()} for layer in layers]
    rng_state = model.rng.bit_generator.state
    rows = []
    h = x
    for layer in layers:
        began = time.perf_counter()
        h = layer.forward(h, training=True, checked=True)
        rows.append({"name": layer.name, "type": type(layer).__name__,
                     "forward_ms": (time.perf_counter() - began) * 1e3,
                     "output_shape": tuple(h.shape), "output_bytes": int(h.nbytes),
                     "im2col_bytes": _im2col_bytes(layer), "params": layer.num_params()})
    began = time.perf_counter()
    model.loss.forward(h, y)
    dy = model.loss.backward()
    loss_ms = (time.perf_counter() - began) * 1e3
    for i in range(len(layers) - 1, -1, -1):
        began = time.perf_counter()
        dy = layers[i].backward(dy, input_grad=i > 0)
        rows[i]["backward_ms"] = (time.perf_counter() - began) * 1e3
    for layer, buffers in zip(layers, saved):
        layer.buffers.update(buffers)
    model.rng.bit_generator.state = rng_state
    totals = {key: sum(row[key] for row in rows)
              for key in ("forward_ms", "backward_ms", "output_bytes", "im2col_bytes", "params")}
    result = {"layers": rows, "loss_ms": loss_ms, "totals": totals,
              "total_ms": totals["forward_ms"] + totals["backward_ms"] + loss_ms}
    if print_fn is not None:
        print_fn(format_profile(result))
    return result


def format_profile(result):
    """The profile as a fixed-width text table."""
    header = (f"{'layer':<16}{'type':<13}{'forward ms':>11}{'backward ms':>12}"
              f"{'output shape':>22}{'output MB':>11}{'im2col MB':>11}{'params':>11}")
    lines = [header, "-" * len(header)]
    for row in result["layers"]:
        lines.append(f"{row['name']:<16}{row['type']:<13}{row['forward_ms']:>11.2f}"
                     f"{row['backward_ms']:>12.2f}{str(row['output_shape']):>22}"
                     f"{row['output_bytes'] / 2**20:>11.2f}{row['im2col_bytes'] / 2**20:>11.2f}"
                     f"{row['params']:>11,}")
    t = result["totals"]
    lines.append("-" * len(header))
    lines.append(f"{'total':<29}{t['forward_ms']:>11.2f}{t['backward_ms']:>12.2f}{'':>22}"
                 f"{t['output_bytes'] / 2**20:>11.2f}{t['im2col_bytes'] / 2**20:>11.2f}"
                 f"{t['params']:>11,}")
    lines.append(f"loss {result['loss_ms']:.2f} ms; step without the optimizer "
                 f"{result['total_ms']:.2f} ms")
    return "\n".join(lines)
