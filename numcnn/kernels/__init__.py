"""Kernels: the loops behind the layers, in two interchangeable backends.

- :mod:`numcnn.kernels.reference`: plain NumPy, written to be read.
- :mod:`numcnn.kernels.jit`: numba, written to be run (a package of kernels in rooms).

Layers never import either directly: they ask :func:`numcnn.backend.kernels`
for the active one, so one switch (:func:`numcnn.set_backend`) moves a whole
model between them.
"""
