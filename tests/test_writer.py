"""The atomic writer does what ``open(path, "wb")`` would, and ``load`` reads only files.

numcnn.files.write_atomically writes a temporary file and renames it over the
target. Where a plain ``open()`` would do something else, it does that: a
symbolic link is followed, a special file is written into (never replaced), a
folder's name is an error, and long names work. numcnn.load refuses what is
not a regular file instead of waiting on a pipe forever.
"""
import errno
import os
import stat
import threading

import pytest

import numcnn
from numcnn.errors import ModelFileError
from numcnn.files import write_atomically, write_text_atomically
from numcnn.layers import Dense, Flatten


def small_model():
    return numcnn.Sequential([Flatten(), Dense(3 * 4 * 4, 2)], seed=0)


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_a_symbolic_link_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "model.npz"
    small_model().save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    model = small_model()
    model.layers[1].params["b"][:] = 7
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)          # still the link
    assert (numcnn.load(target).layers[1].params["b"] == 7).all()          # its target written
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "runs") == []


def test_a_dangling_link_gets_its_target_as_open_would(tmp_path):
    link = tmp_path / "notes.txt"
    link.symlink_to(tmp_path / "real.txt")
    write_text_atomically(link, "hello")
    assert link.is_symlink() and (tmp_path / "real.txt").read_text() == "hello"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null on this system")
def test_saving_to_dev_null_writes_into_it_and_leaves_the_device(tmp_path):
    before = os.stat("/dev/null")
    small_model().save("/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_is_written_into_and_load_refuses_it_at_once(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    write_text_atomically(pipe, "through the pipe")
    reader.join(timeout=30)
    assert received == [b"through the pipe"] and stat.S_ISFIFO(os.stat(pipe).st_mode)
    with pytest.raises(ModelFileError, match="not a regular file"):       # no reader: no hang
        numcnn.load(pipe)


def test_a_folder_name_is_a_folder_not_a_file(tmp_path):
    for name in (str(tmp_path / "out") + os.sep, tmp_path):
        with pytest.raises(IsADirectoryError) as error:
            small_model().save(name)
        assert error.value.errno == errno.EISDIR and error.value.filename == os.fspath(name)
    assert sorted(path.name for path in tmp_path.iterdir()) == []          # no file "out"
    with pytest.raises(ModelFileError, match="not a regular file"):
        numcnn.load(tmp_path)


@pytest.mark.parametrize("length", [200, 242, 250, 255])
def test_names_up_to_the_limit_of_the_file_system(tmp_path, length):
    """The temporary file's name is the target's plus 14 characters; for a long name it
    takes a short one, so any name the file system takes can be written."""
    path = tmp_path / ("m" * (length - 4) + ".npz")
    small_model().save(path)
    assert path.is_file() and numcnn.load(path).layers[1].params["W"].shape == (48, 2)
    assert leftovers(tmp_path) == []
    write_atomically(path, lambda handle: handle.write(b"x"))            # replaced, as open()
    assert path.read_bytes() == b"x"
    with pytest.raises(OSError) as error:                                # one byte too many:
        small_model().save(tmp_path / ("m" * 256))                       # the system's error
    assert error.value.errno == errno.ENAMETOOLONG and leftovers(tmp_path) == []
