"""Input and output paths that a remote caller may name: confined to the service's roots.

A job names files on the service's host, so the control API must never become a way to
read or overwrite anything else. A path is accepted only when, fully resolved (every
symlink followed), it lies inside one of the configured roots; ``..`` is refused outright,
even when it would stay inside, so what a caller writes is what is used. Inputs must be
regular files (never devices, FIFOs or sockets: ``/dev/zero`` is endless, a FIFO blocks a
worker forever); an output's folder must already exist inside a root and the output itself,
when it exists, must be a regular file or folder and not a symlink.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePath

from ..errors import ConfigError

__all__ = ["PathNotAllowed", "Roots", "MAX_PATH_CHARS"]

#: longer path strings are refused before they touch the file system
MAX_PATH_CHARS = 4096


class PathNotAllowed(ConfigError):
    """A path outside the roots, through a symlink out of them, or not a plain file."""


class Roots:
    """The folders a job may read from and write into (resolved once, at start)."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]]) -> None:
        resolved = []
        for root in roots:
            path = Path(root).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(f"roots: {root!s} is not a folder")
            resolved.append(path)
        if not resolved:
            raise ConfigError("roots: give at least one folder that jobs may read and write")
        self.folders: tuple[Path, ...] = tuple(resolved)

    def __repr__(self) -> str:
        return f"Roots({[str(f) for f in self.folders]})"

    def _inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.folders)

    def _candidate(self, what: str, value: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{what}: expected a path, got {value!r}")
        if len(value) > MAX_PATH_CHARS or "\x00" in value:
            raise ConfigError(f"{what}: not a usable path (too long or contains NUL)")
        if "://" in value:
            raise PathNotAllowed(f"{what}: {value!r}: only files inside the service's roots are allowed, not URLs")
        if ".." in PurePath(value).parts:
            raise PathNotAllowed(f"{what}: {value!r}: '..' is not allowed in paths")
        path = Path(value).expanduser()
        # relative paths are taken from the first root, never from the service's cwd
        return path if path.is_absolute() else self.folders[0] / path

    def _refuse_outside(self, what: str, value: str) -> PathNotAllowed:
        allowed = ", ".join(str(f) for f in self.folders)
        return PathNotAllowed(f"{what}: {value!r} is outside the allowed folders ({allowed})")

    def input(self, value: str, *, what: str = "input") -> Path:
        """The resolved path of an existing regular file inside a root."""
        path = self._candidate(what, value)
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            if not self._inside(path.parent.resolve()):
                raise self._refuse_outside(what, value) from None
            raise ConfigError(f"{what}: {value!r} does not exist") from None
        except (OSError, RuntimeError) as exc:  # a symlink loop, a permission problem
            raise ConfigError(f"{what}: {value!r} cannot be opened ({exc})") from None
        if not self._inside(real):
            raise self._refuse_outside(what, value)
        mode = real.stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (device, FIFO or socket)"
            raise PathNotAllowed(f"{what}: {value!r} is {kind}; give a video file")
        return real

    def output(self, value: str, *, what: str = "output") -> Path:
        """The path to write: its folder exists inside a root; an existing target is a plain
        file or folder, not a symlink."""
        path = self._candidate(what, value)
        if path.name in ("", ".", ".."):
            raise ConfigError(f"{what}: {value!r} names no file")
        try:
            parent = path.parent.resolve(strict=True)
        except FileNotFoundError:
            if not self._inside(path.parent.resolve()):
                raise self._refuse_outside(what, value) from None
            raise ConfigError(f"{what}: folder {str(path.parent)!r} does not exist") from None
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{what}: {value!r} cannot be used ({exc})") from None
        if not self._inside(parent):
            raise self._refuse_outside(what, value)
        if not parent.is_dir():
            raise ConfigError(f"{what}: {str(path.parent)!r} is not a folder")
        target = parent / path.name
        try:
            mode = target.lstat().st_mode
        except FileNotFoundError:
            return target
        if stat.S_ISLNK(mode):
            raise PathNotAllowed(f"{what}: {value!r} is a symlink; outputs are written only to plain files")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise PathNotAllowed(f"{what}: {value!r} is not a regular file (device, FIFO or socket)")
        return target
