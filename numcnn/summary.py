"""The summary table of a model: layers, output shapes, parameter counts (as Keras prints it)."""

__all__ = ["summary_text"]


def summary_text(model):
    """The table for a built model, as one string.

    Raises ValueError when the input shape is unknown (pass ``input_shape`` to
    ``Sequential`` or ``summary``, or run the model once).
    """
    if model.input_shape is None:
        raise ValueError("summary: the input shape is unknown; pass input_shape=(C, H, W) "
                         "here or to Sequential, or fit/predict once")
    rows = [("Layer (type)", "Output Shape", "Param #")]
    for layer, shape in zip(model.layers, model.output_shapes):
        rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + shape),
                     f"{layer.num_params():,}"))
    trainable = model.num_params()
    frozen = sum(b.size for layer in model.layers for b in layer.buffers.values())
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(3)]
    line = "=" * sum(widths)
    out = [f"Model: Sequential, input {(None,) + model.input_shape}", line]
    for k, row in enumerate(rows):
        out.append("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        out.append(line if k == 0 else "-" * sum(widths) if k < len(rows) - 1 else line)
    out += [f"Total params: {trainable + frozen:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {frozen:,}"]
    return "\n".join(out)
