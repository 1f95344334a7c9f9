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

Otherwise it does what ``open(path, "wb")`` would do: a symbolic link is
followed (its target is replaced, the link stays); a path that names a folder
(``"out/"``, or an existing folder) is an ``IsADirectoryError``; a special
file (``/dev/null``, a named pipe) is written into as it is, since it cannot
be replaced; names up to the file system's limit (255 bytes) work, the
temporary file taking a shorter name when the target's is long.
"""
import errno
import hashlib
import io
import json
import os
import stat
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
    named = os.fspath(path)
    path = _target(named)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None                                   # no file yet (or not reachable: mkstemp says)
    if mode is not None and not stat.S_ISREG(mode):   # a device or a pipe: written into, as open()
        content = io.BytesIO()                        # made first: a pipe cannot seek, nor
        write(content)                                # /dev/null tell where it is
        try:
            with open(path, "wb") as handle:
                handle.write(content.getvalue())
        except OSError as error:
            raise _naming(error, named) from None
        return Path(named)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path),
                                                 suffix=".tmp")
    except OSError as error:
        raise _naming(error, named) from None
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
            raise _naming(error, named) from None
        raise
    return Path(named)


def _target(named):
    """The file ``open(named, "wb")`` would write: symbolic links followed; a folder's
    name is an IsADirectoryError (a trailing separator, or an existing folder)."""
    if named.endswith(os.sep) or (os.altsep and named.endswith(os.altsep)):
        raise IsADirectoryError(errno.EISDIR, "the name of a folder (it ends in a separator), "
                                "not of a file", named)
    target = Path(os.path.realpath(named))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), named)
    return target


def _temporary_prefix(path):
    """``.<name>.``, or ``.<hash of name>.`` when that would make the temporary file's name
    longer than the file system allows (its 8 random characters and ``.tmp`` come after)."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        limit = 255
    prefix = f".{path.name}."
    if len(os.fsencode(prefix)) + 12 <= limit:
        return prefix
    return f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}."


def _new_file_mode():
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0o022)          # the umask can only be read by setting it
    os.umask(mask)
    return 0o666 & ~mask


def _naming(error, path):
    """The same OSError (same class, errno and reason) with ``filename`` the target ``path``."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def write_text_atomically(path, text):
    """:func:`write_atomically` for a text file (UTF-8; a file name that is not UTF-8, held as
    surrogates, is written back as its own bytes)."""
    content = text.encode("utf-8", "surrogateescape")
    return write_atomically(path, lambda handle: handle.write(content))


def write_json_atomically(path, document):
    """:func:`write_atomically` for a JSON document (indented, UTF-8)."""
    return write_text_atomically(path, json.dumps(document, indent=2) + "\n")
