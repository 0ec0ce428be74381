"""One writer per output: an advisory lock file ``.NAME.lock`` next to the output.

``fcntl.flock`` locks belong to an open file description, so two sinks in one process
conflict just as two processes do, and the kernel drops the lock when its holder dies
(``kill -9`` included): a lock file left behind by a dead writer is simply taken over.
The holder removes the file when it is done; a writer that opened the file just before
it was removed would then hold a lock on a name nobody else sees, so after locking it
checks that the name still points at the file it locked, and retries otherwise.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import OutputError

__all__ = ["OutputLock", "lock_path"]

_ATTEMPTS = 5  # each retry means another writer removed the file at that very moment


def lock_path(final: Path) -> Path:
    """``dir/out.mov`` → ``dir/.out.mov.lock`` (``frames/`` → ``.frames.lock``)."""
    return final.with_name(f".{final.name}.lock")


class OutputLock:
    """``acquire()`` takes the lock or raises ``OutputError``; ``release()`` is idempotent."""

    def __init__(self, final: Path, shown: str) -> None:
        self.path = lock_path(final)
        self.shown = shown
        self._fd: int | None = None

    @staticmethod
    def busy(shown: str) -> OutputError:
        return OutputError(f"cannot write {shown}: another streammat process (or sink) is writing it")

    @property
    def held(self) -> bool:
        return self._fd is not None

    @staticmethod
    def held_elsewhere(final: Path) -> bool:
        """Whether another writer holds the lock of ``final`` now (creates no file)."""
        try:
            fd = os.open(lock_path(final), os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing releases the probe's shared lock
        return False

    def acquire(self) -> None:
        if self._fd is not None:
            return
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write {self.shown}: {(exc.strerror or str(exc)).lower()}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise self.busy(self.shown) from exc
                raise OutputError(f"cannot lock {self.shown}: {exc.strerror or exc}") from exc
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)  # the holder removed it between our open and flock: try again
        raise self.busy(self.shown)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked, so nobody can take a stale name
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
