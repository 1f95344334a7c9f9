"""The PBC study's own machinery (``examples/pbc.py``): its command (the list: :mod:`cellstudy`)."""
