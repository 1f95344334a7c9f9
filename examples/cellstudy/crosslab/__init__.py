"""What the cross-laboratory test (``examples/transfer.py``) alone uses: the scale of
each laboratory's cells, and the transforms between them (the list: :mod:`cellstudy`)."""
