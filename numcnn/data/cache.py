"""A cache of decoded images, keyed on the bytes of the files.

Decoding thousands of JPEGs takes tens of seconds; reading one ``.npz`` of
their integer block sums takes about one. :func:`load_or_decode` does one or
the other. The cache key is a hash of

- the decoding settings (the ``factor``, the expected shape, any other
  setting the caller passes) and the per-image ``transform``'s ``cache_key``;
- for every file, its name relative to the root *and a hash of its bytes*:
  a file replaced by another of the same name and size (or copied over with
  ``cp -p``, keeping the modification time) changes the key.

Reading every file to hash it costs about a tenth of a second per 10,000
small JPEGs once the operating system has them in memory. A transform without
a ``cache_key`` attribute cannot be told apart from another, so its results
are not cached (a warning says so), nor are sets that decode to more than
``MAX_CACHE_BYTES`` (2 GiB). The cache file is written by numcnn's
atomic writer; a damaged or unreadable one is rebuilt, and a read-only or
full disk only warns: a cache must never lose a run.

Where: ``cache_dir`` if given, else ``$NUMCNN_CACHE``, else the platform's
cache folder (``~/.cache/numcnn`` on Linux; :func:`default_cache_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import platformdirs

from ..files import write_atomically
from .decode import decode_images

__all__ = ["CACHE_ENV_VAR", "default_cache_dir", "content_key", "load_or_decode"]

CACHE_ENV_VAR = "NUMCNN_CACHE"
"""The environment variable that may say where the cache is."""
MAX_CACHE_BYTES = 2 << 30
"""Decoded sets larger than this are not written to the cache (whole 240x320
frames of 12,444 images would take 2.9 GB): crop or downscale first."""
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$NUMCNN_CACHE`` if set, else the platform's cache folder for numcnn.

    That is ``platformdirs.user_cache_dir("numcnn")``: ``~/.cache/numcnn`` on
    Linux (or ``$XDG_CACHE_HOME/numcnn``), ``~/Library/Caches/numcnn`` on
    macOS, ``%LOCALAPPDATA%\\numcnn\\Cache`` on Windows.
    """
    from_environment = os.environ.get(CACHE_ENV_VAR)
    if from_environment:
        return Path(from_environment).expanduser()
    return Path(platformdirs.user_cache_dir("numcnn", appauthor=False))


def file_digest(path) -> str:
    """A hash of the bytes of one file (BLAKE2b, 128 bits, hex)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(settings: dict, root: Path, paths: Sequence[Path]) -> str:
    """A hash of ``settings`` and of every file's relative name and bytes (hex)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        name = Path(path).relative_to(root).as_posix()
        # a file name need not be UTF-8 (Linux allows any bytes): hash its bytes as they are
        digest.update(f"{name}\t{file_digest(path)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _transform_key(transform) -> Optional[str]:
    if transform is None:
        return "none"
    key = getattr(transform, "cache_key", None)
    return key if isinstance(key, str) and key else None


def load_or_decode(root, paths: Sequence[Path], labels: np.ndarray, name: str,
                   transform: Optional[Callable] = None, factor: int = 1,
                   expected_shape=None, settings: Optional[dict] = None,
                   cache_dir=None, cache: bool = True, progress: bool = False,
                   description: str = "decoding"
                   ) -> Tuple[np.ndarray, np.ndarray, List[Path], List[Tuple[Path, str]]]:
    """The integer block sums of ``paths``, from the cache or decoded (then cached).

    Parameters
    ----------
    root : Path
        The folder the ``paths`` are relative to (names in the key and the file).
    paths : sequence of Path
    labels : ndarray, shape (len(paths),)
    name : str
        A readable prefix of the cache file's name, e.g. ``"mydata-train"``.
    transform, factor, expected_shape
        As in :func:`numcnn.data.decode.decode_images`.
    settings : dict, optional
        Anything else that changes the result (a subset's seed, ...): part of the key.
    cache_dir : str or Path, optional
        Default :func:`default_cache_dir`.
    cache : bool
        Read and write the cache (True) or always decode (False).
    progress : bool
        Show a progress bar while decoding.

    Returns
    -------
    sums : ndarray (M, 3, H', W'), unsigned int
    labels : ndarray (M,)
    paths : list of Path
        The M files used, in order.
    skipped : list of (Path, str)
        The files left out, with the reason.
    """
    root = Path(root)
    transform_key = _transform_key(transform)
    if cache and transform_key is None:
        warnings.warn(f"{transform!r} has no cache_key attribute, so its results cannot be "
                      f"cached: decoding every time", stacklevel=3)
        cache = False
    if not cache:
        return _decode(paths, labels, transform, factor, expected_shape, progress, description)
    key = content_key({"version": 1, "transform": transform_key, "factor": factor,
                       "expected_shape": None if expected_shape is None else list(expected_shape),
                       **(settings or {})}, root, paths)
    file = Path(cache_dir or default_cache_dir()) / f"{name}-{transform_key}-f{factor}-{key[:16]}.npz"
    if file.exists():
        try:
            return _read(file, key, root)
        except ValueError as error:
            warnings.warn(f"{error}; rebuilding it", stacklevel=3)
    sums, kept_labels, kept, skipped = _decode(paths, labels, transform, factor, expected_shape,
                                               progress, description)
    if sums.nbytes > MAX_CACHE_BYTES:
        warnings.warn(f"not caching {name}: its decoded images take {sums.nbytes / 2**30:.1f} GiB, "
                      f"more than {MAX_CACHE_BYTES / 2**30:.0f} GiB (crop or downscale them)",
                      stacklevel=3)
        return sums, kept_labels, kept, skipped
    relative = lambda items: np.array([Path(p).relative_to(root).as_posix() for p in items],  # noqa: E731
                                      dtype=str)
    arrays = dict(key=np.array(key), sums=sums, labels=kept_labels, names=relative(kept),
                  skipped_names=relative([path for path, _ in skipped]),
                  skipped_reasons=np.array([reason for _, reason in skipped], dtype=str))
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(file, lambda handle: np.savez(handle, **arrays))
    except OSError as error:
        warnings.warn(f"could not write the cache file {file} ({error}); continuing without it",
                      stacklevel=3)
    return sums, kept_labels, kept, skipped


def _decode(paths, labels, transform, factor, expected_shape, progress, description):
    sums, kept, skipped = decode_images(paths, expected_shape, transform, factor, progress,
                                        description=description)
    return sums, np.asarray(labels)[kept], [Path(paths[i]) for i in kept], skipped


def _read(file: Path, key: str, root: Path):
    """A cache file's arrays; ValueError if it is damaged or does not match ``key``."""
    try:
        with np.load(file, allow_pickle=False) as data:
            stored = {name: data[name] for name in
                      ("key", "sums", "labels", "names", "skipped_names", "skipped_reasons")}
    except Exception as error:  # a damaged zip fails in many ways; all mean "rebuild"
        raise ValueError(f"cache file {file} is unreadable ({type(error).__name__}: {error})") from error
    if str(stored["key"]) != key:
        raise ValueError(f"cache file {file} was written for other settings or files")
    n = len(stored["labels"])
    if len(stored["sums"]) != n or len(stored["names"]) != n:
        raise ValueError(f"cache file {file} is inconsistent: {len(stored['sums'])} images, "
                         f"{n} labels, {len(stored['names'])} names")
    skipped = [(root / str(name), str(reason))
               for name, reason in zip(stored["skipped_names"], stored["skipped_reasons"])]
    return (stored["sums"], stored["labels"].astype(np.int64),
            [root / str(name) for name in stored["names"]], skipped)
