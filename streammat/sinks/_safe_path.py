"""Safe writing: a hidden temporary sibling, renamed to the final (or partial) name at close.

A file output ``dir/out.mov`` is written to ``dir/.out.tmp-<pid>.mov`` (same folder, so the
rename is atomic; same extension, so the muxer is chosen right). ``close(complete=True)``
renames it to ``out.mov``; ``close(complete=False)`` to ``out.partial.mov``. A folder output
(PNG sequence) works the same way with ``.frames.tmp-<pid>/`` → ``frames/`` or
``frames.partial/``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import OutputError
from ._playable import playable_frames

log = logging.getLogger(__name__)


def check_file_target(path: Path, shown: str | None = None) -> None:
    """Raise ``OutputError`` (one line naming ``shown``, the output as the user gave it,
    default ``path``) if a file cannot be written at ``path``."""
    shown = shown or str(path)
    parent = path.parent
    if path.is_dir():
        raise OutputError(f"cannot write {shown}: it is a directory, expected a file name")
    check_folder(parent, shown)


def check_folder(folder: Path, shown: str) -> None:
    """Raise ``OutputError`` naming ``shown`` unless new files can be made in ``folder``."""
    if not folder.exists():
        raise OutputError(f"cannot write {shown}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"cannot write {shown}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {shown}: permission denied on folder {folder}")


def temp_sibling(final: Path, *, pid: int | None = None) -> Path:
    """``dir/.name.tmp-<pid>.ext`` (or ``dir/.name.tmp-<pid>`` for a folder without suffix);
    ``pid`` names another process's temporary file (the service recovers a dead one's)."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid() if pid is None else pid}{final.suffix}")


def partial_name(final: Path) -> Path:
    """``out.mov`` → ``out.partial.mov``; ``frames`` → ``frames.partial``."""
    return final.with_name(f"{final.stem}.partial{final.suffix}")


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def finish(tmp: Path, final: Path, *, complete: bool, frames: int) -> Path | None:
    """Rename ``tmp`` to ``final`` (complete) or its partial name; remove it if empty.

    Returns the path the output now has, or None when nothing was kept."""
    if frames == 0:
        _remove(tmp)
        log.warning("no frames were written; %s was not created", final)
        return None
    target = final if complete else partial_name(final)
    try:
        if tmp.is_dir():
            if target.is_dir() and any(target.iterdir()):
                if complete:  # an existing non-empty folder: move the new files into it
                    for child in tmp.iterdir():
                        os.replace(child, target / child.name)
                    tmp.rmdir()
                    return target
                _remove(target)  # an older partial folder of the same name
            elif target.is_dir():
                target.rmdir()
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot rename {tmp} to {target}: {exc.strerror or exc}") from exc
    if not complete:
        log.warning("output is partial: %s (%d frames)", target, frames)
    return target


def salvage(tmp: Path, final: Path, *, written: int) -> tuple[Path | None, int]:
    """Keep what plays of an output that could not be finalized, as its partial name.

    Returns (the partial's path or None when nothing played and ``tmp`` was removed,
    the number of playable frames)."""
    playable = playable_frames(tmp)
    if playable == 0:
        _remove(tmp)
        return None, 0
    target = partial_name(final)
    try:
        if target.is_dir():
            _remove(target)
        os.replace(tmp, target)
    except OSError:
        _remove(tmp)
        return None, 0
    return target, playable


def discard(tmp: Path) -> None:
    """Remove a temporary output after a failed open."""
    _remove(tmp)
