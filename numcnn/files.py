"""Write files so that a reader never sees half of one: the one atomic writer.

Every file numcnn writes (models, weights, checkpoints, caches) goes through
:func:`write_atomically`: the bytes go to a temporary file with a unique name
in the same folder, are flushed to disk, and the temporary file is renamed
over the target in one step (``os.replace``). A crash, a kill or a full disk
at any moment leaves either the old file or the new one, never a mix; on any
error the temporary file is removed and the error propagates. Two processes
writing the same target at once each use their own temporary file, and the
last rename wins. The file gets the permissions a plain ``open(path, "wb")``
would give it (0o666 less the umask), not the temporary file's 0o600.
"""
import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically", "write_text_atomically", "write_json_atomically"]


def write_atomically(path, write):
    """Call ``write(handle)`` on a fresh binary file, then move it to ``path``.

    Parameters
    ----------
    path : str or Path
        The target. Its folder must exist.
    write : callable
        ``write(handle)`` writes the content to the open binary file ``handle``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        The folder is missing, read-only or full (the temporary file is
        removed first); the error's ``filename`` is ``path``, so that its
        message names the file that could not be written. Whatever else ``write`` raises propagates the same way.
    """
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                 suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), _new_file_mode())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:  # also KeyboardInterrupt: never leave the temporary file
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise _naming(error, path) from None
        raise
    return path


def _new_file_mode():
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0o022)          # the umask can only be read by setting it
    os.umask(mask)
    return 0o666 & ~mask


def _naming(error, path):
    """The same OSError (same class, errno and reason) with ``filename`` the target ``path``."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def write_text_atomically(path, text):
    """:func:`write_atomically` for a text file (UTF-8)."""
    return write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomically(path, document):
    """:func:`write_atomically` for a JSON document (indented, UTF-8)."""
    return write_text_atomically(path, json.dumps(document, indent=2) + "\n")
