"""Opening a drop without being tricked into reading something else.

A station controls what lands in its drop folder. A symbolic link there could point at any file
the hub can read (/etc/passwd, /proc/self/environ), a FIFO would block the run forever on open,
a device would stream without end. So a drop is opened once, here, with O_NOFOLLOW (a link in
the last component fails instead of being followed) and O_NONBLOCK (a FIFO opens at once instead
of waiting for a writer), and the open descriptor is checked with fstat: only a regular file is
read. Every later read of the drop - encoding sample, hash, parsing, the quarantine copy - goes
through that descriptor (`DropFile.reader`, `DropFile.fs_path`), never through the name again,
so swapping the file for a link after the check changes nothing.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from core.errors import SourceError

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_PROC_FD = Path("/proc/self/fd")


def display(path: Path | str) -> str:
    """A path as text that is safe to print and store: undecodable bytes as backslash escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def kind_of(mode: int) -> str | None:
    """What a non-regular file is, for messages; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def refusal(path: Path | str, st: os.stat_result) -> str:
    """Why a non-regular entry is not read, naming where a link points (never following it)."""
    what = kind_of(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        try:
            what += f" to {display(os.readlink(path))}"
        except OSError:
            pass
        return f"{what}: links in drop folders are never followed, read or copied"
    return f"{what}, not a regular file: not read, not copied"


class NotFound(SourceError):
    """The drop is gone (renamed or deleted since it was listed)."""


class _PositionalReader(io.RawIOBase):
    """A read-only view of a shared descriptor with its own offset (pread), so several readers
    of one drop never disturb each other and none reopens the file by name."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = os.preadv(self._fd, [buffer], self._pos)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


class DropFile:
    """A drop opened safely: a regular file, its descriptor held until `close`.

    `path` names the file in messages; the bytes always come from the descriptor.
    """

    def __init__(self, path: Path | str, fd: int, st: os.stat_result):
        self.path = Path(path)
        self.fd = fd
        self.stat = st

    @property
    def label(self) -> str:
        return display(self.path)

    @property
    def size(self) -> int:
        return self.stat.st_size

    def reader(self, buffering: int = 1 << 20) -> io.BufferedReader:
        """A fresh buffered reader at offset 0; closing it leaves the drop open."""
        return io.BufferedReader(_PositionalReader(self.fd), buffer_size=buffering)

    def fs_path(self) -> str:
        """A name for libraries that insist on opening a path themselves (calamine): on Linux the
        descriptor's own /proc entry, which reopens this very file whatever its name now points to."""
        proc = _PROC_FD / str(self.fd)
        return str(proc) if _PROC_FD.is_dir() else str(self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "DropFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_drop(path: Path | str) -> DropFile:
    """Open `path` for reading without following a link in its last component and without
    blocking on a FIFO; raise SourceError unless it is a regular file."""
    label = display(path)
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        raise NotFound(label, "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceError(label, refusal(path, os.lstat(path))) from None
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO on some systems
            raise SourceError(label, "not a regular file (a socket or a FIFO): not read, not copied") from None
        raise SourceError(label, f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(label, refusal(path, st))
        # A regular file never blocks; clear O_NONBLOCK so reads behave as usual everywhere.
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return DropFile(path, fd, st)


def check_size(drop: DropFile, max_bytes: int) -> None:
    if drop.size > max_bytes:
        raise SourceError(drop.label, f"file is {drop.size:,} bytes, over the limit max_file_bytes = {max_bytes:,}")


def as_drop(location: "DropFile | Path | str") -> tuple[DropFile, bool]:
    """(the drop, whether it was opened here, so the caller must close it)."""
    if isinstance(location, DropFile):
        return location, False
    return open_drop(location), True
