"""Find which images are augmentations of the same original: near-duplicate groups.

An augmented dataset such as the blood-cell TRAIN folder holds each original
cell many times, turned, mirrored and shifted. A validation split drawn image
by image then shares cells with training and reads high. When the files carry
no id of their original, the groups can be recovered from the pixels:

1. **Polar spectrum.** Each image (already centred on its object) is resampled
   on a polar grid around its centre, ``p(theta, r, c)`` with ``A`` angles. A
   rotation about the centre is then a circular shift along ``theta``, and a
   mirror image reverses ``theta``. Each image is made zero-mean and unit-norm,
   and its discrete Fourier transform along ``theta``, ``P(k, r, c)``, is kept.
2. **Similarity** of images ``i`` and ``j``: the largest normalised circular
   cross-correlation over all rotations ``s`` and the mirror,

       sim(i, j) = max over s of  max( sum_{theta,r,c} p_i(theta, r, c) p_j(theta - s, r, c),
                                       sum_{theta,r,c} p_i(theta, r, c) p_j(s - theta, r, c) )

   which lies in [-1, 1] and is 1 for an exact turned or mirrored copy. By the
   correlation theorem the cross-correlation over all ``s`` at once is the
   inverse transform of ``sum_{r,c} P_i(k) conj(P_j(k))`` (the mirror: without
   the ``conj``), so the whole matrix costs one complex matrix product per
   frequency ``k`` and one inverse FFT.
3. **Groups.** Each image is linked to its ``neighbours`` most similar images
   (a symmetric k-nearest-neighbour graph) and the graph is cut into the
   requested number of groups by spectral clustering (scikit-learn).

Near-duplicates from different originals can still land in one group, and an
odd augmentation can fall into the wrong one, so the groups are an estimate:
good enough to hold whole originals out of training, not an exact id.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import numpy as np

__all__ = ["polar_spectra", "rotation_invariant_similarity", "group_near_duplicates",
           "group_per_class"]

ANGLES = 64          # angles of the polar grid: rotations are matched in steps of 360/64 degrees


def polar_spectra(x: np.ndarray, radius: Optional[int] = None, angles: int = ANGLES) -> np.ndarray:
    """Fourier transforms along the angle of each image's polar resampling.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Images centred on the object of interest.
    radius : int, optional
        Largest radius sampled, in pixels; default ``min(H, W) // 2 - 6`` (the
        outer ring, where shifted copies bring in border fill, is left out).
    angles : int
        Number of angles of the polar grid.

    Returns
    -------
    ndarray, shape (N, angles // 2 + 1, radius * C), complex64
        ``P[n, k, (r, c)]``: frequency ``k`` along the angle of image ``n``,
        after the image was made zero-mean and unit-norm on the polar grid.
    """
    from skimage.transform import warp_polar

    if x.ndim != 4:
        raise ValueError(f"polar_spectra expects NCHW images, got shape {x.shape}")
    n, channels, height, width = x.shape
    if radius is None:
        radius = min(height, width) // 2 - 6
    if not 2 <= radius <= min(height, width) // 2:
        raise ValueError(f"radius {radius} does not fit images of {height}x{width}")
    spectra = np.empty((n, angles // 2 + 1, radius * channels), np.complex64)
    for i in range(n):
        hwc = np.moveaxis(x[i], 0, -1).astype(np.float64)
        polar = warp_polar(hwc, radius=radius, output_shape=(angles, radius),
                           channel_axis=-1)                          # (angle, r, c)
        polar -= polar.mean()
        polar /= np.linalg.norm(polar) + 1e-12
        spectra[i] = np.fft.rfft(polar, axis=0).reshape(angles // 2 + 1, -1)
    return spectra


def rotation_invariant_similarity(spectra_a: np.ndarray, spectra_b: Optional[np.ndarray] = None,
                                  angles: int = ANGLES, chunk: int = 256) -> np.ndarray:
    """Best normalised correlation of every pair over rotations and the mirror.

    Parameters
    ----------
    spectra_a : ndarray, shape (Na, angles // 2 + 1, M), complex
        From :func:`polar_spectra`.
    spectra_b : ndarray, shape (Nb, angles // 2 + 1, M), complex, optional
        Default: ``spectra_a`` (the square matrix of one set).
    angles : int
        The ``angles`` the spectra were made with.
    chunk : int
        Rows of the result computed at once (memory: ``chunk * Nb * (angles/2+1)``
        complex numbers, twice).

    Returns
    -------
    ndarray, shape (Na, Nb), float32
        ``sim[i, j]`` in [-1, 1].
    """
    if spectra_b is None:
        spectra_b = spectra_a
    if spectra_a.shape[1:] != spectra_b.shape[1:]:
        raise ValueError(f"spectra of different shapes: {spectra_a.shape[1:]} "
                         f"and {spectra_b.shape[1:]}")
    b_by_frequency = np.ascontiguousarray(spectra_b.transpose(1, 2, 0))   # (K, M, Nb)
    b_conjugate = b_by_frequency.conj()
    similarity = np.empty((len(spectra_a), len(spectra_b)), np.float32)
    for start in range(0, len(spectra_a), chunk):
        a_by_frequency = np.ascontiguousarray(
            spectra_a[start:start + chunk].transpose(1, 0, 2))              # (K, chunk, M)
        turned = np.fft.irfft(a_by_frequency @ b_conjugate, n=angles, axis=0)    # (angles, chunk, Nb)
        mirrored = np.fft.irfft(a_by_frequency @ b_by_frequency, n=angles, axis=0)
        similarity[start:start + chunk] = np.maximum(turned.max(axis=0), mirrored.max(axis=0))
    return similarity


def group_near_duplicates(x: np.ndarray, n_groups: int, neighbours: int = 10,
                          seed: int = 0) -> np.ndarray:
    """Cut a set of images into ``n_groups`` groups of turned, mirrored, shifted copies.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Images centred on their object (e.g. blood-cell stain crops).
    n_groups : int
        How many originals the images were made from.
    neighbours : int
        Each image is linked to this many most similar images.
    seed : int
        Seed of the spectral clustering's eigen-solver.

    Returns
    -------
    ndarray, shape (N,), int64
        Group of each image, ``0 .. n_groups - 1``.
    """
    from sklearn.cluster import SpectralClustering

    if not 1 <= n_groups <= len(x):
        raise ValueError(f"cannot cut {len(x)} images into {n_groups} groups")
    if n_groups == 1:
        return np.zeros(len(x), np.int64)
    if n_groups == len(x):
        # every image its own original (spectral clustering would warn "k >= N" and
        # fall back to a dense eigen-solver to find what is known)
        return np.arange(len(x), dtype=np.int64)
    similarity = rotation_invariant_similarity(polar_spectra(x))
    k = min(neighbours, len(x) - 1)
    np.fill_diagonal(similarity, -np.inf)                      # an image is not its own neighbour
    nearest = np.argsort(-similarity, axis=1)[:, :k]           # (N, k)
    graph = np.zeros(similarity.shape, np.float64)
    graph[np.arange(len(x))[:, None], nearest] = 1.0
    graph = np.maximum(graph, graph.T)                         # symmetric k-NN graph
    clustering = SpectralClustering(n_clusters=n_groups, affinity="precomputed",
                                    assign_labels="cluster_qr", random_state=seed)
    with warnings.catch_warnings():
        # a graph that falls apart into its groups is the best case, not a problem
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return clustering.fit_predict(graph).astype(np.int64)


def group_per_class(x: np.ndarray, y: np.ndarray, groups_per_class: Sequence[int],
                    neighbours: int = 10, seed: int = 0) -> np.ndarray:
    """:func:`group_near_duplicates` within each class; group ids unique across classes.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    y : ndarray, shape (N,), int
        Class of each image, ``0 .. len(groups_per_class) - 1``.
    groups_per_class : sequence of int
        Number of originals of each class.
    neighbours, seed
        As in :func:`group_near_duplicates`.

    Returns
    -------
    ndarray, shape (N,), int64
        Group of each image; class ``c``'s groups follow those of classes ``< c``.
    """
    y = np.asarray(y)
    if len(y) != len(x):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    unknown = np.setdiff1d(np.unique(y), np.arange(len(groups_per_class)))
    if unknown.size:
        raise ValueError(f"labels {unknown.tolist()} have no entry in groups_per_class")
    groups = np.empty(len(y), np.int64)
    first = 0
    for label, count in enumerate(groups_per_class):
        members = np.flatnonzero(y == label)
        if len(members) == 0:
            continue
        groups[members] = first + group_near_duplicates(x[members], min(count, len(members)),
                                                        neighbours=neighbours, seed=seed)
        first += count
    return groups
