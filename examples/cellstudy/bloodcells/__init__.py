"""The blood-cell study's own machinery (``examples/bloodcells.py``): its command, the
stain crop, the original cells, the raw label list (the list: :mod:`cellstudy`)."""
