"""What a file sink may write: the policy that keeps inputs and earlier outputs safe.

- An output is never an input (the same file, also through a hard link or a symlink;
  a PNG sequence never holds the input), even with ``overwrite``.
- An existing output is refused unless ``overwrite`` (ffmpeg's ``-y``); a PNG folder
  that holds anything but a PNG sequence is refused in any case, so replacing one never
  removes unrelated files.
- One writer per output (``OutputLock``).
- Temporary files left by a writer that died are recovered when the output is opened
  next: renamed to the partial name when they hold playable frames, removed otherwise.

``check()`` runs at construction (before a model loads) and again in ``acquire()``, which
the sink calls from ``open()``; messages name the output as the user gave it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import OutputError
from . import _safe_path
from ._lock import OutputLock
from ._playable import drop_truncated_pngs, playable_frames

__all__ = ["OutputTarget", "OVERWRITE_HINT", "recover_stale"]

log = logging.getLogger(__name__)

OVERWRITE_HINT = "use -y/--overwrite to replace it"


def _is_url(name: str) -> bool:
    return "://" in name


def _same(a: Path, b: Path) -> bool:
    """Same file or folder: by device and inode when both exist, else by resolved path."""
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class OutputTarget:
    """The final path of one output and the rules for writing it.

    ``final`` is the file (or, for PNG sequences, the folder or ``folder/base`` that the
    temporary and partial names derive from). For a sequence, ``folder`` holds its files
    and ``owned(name)`` tells which names belong to it; ``whole_folder`` means the output
    is the folder itself (a pattern shares its folder with other files)."""

    def __init__(
        self,
        final: Path,
        shown: str,
        *,
        overwrite: bool = False,
        inputs: Iterable[str] = (),
        folder: Path | None = None,
        owned: Callable[[str], bool] | None = None,
        whole_folder: bool = False,
    ) -> None:
        self.final = final
        self.shown = shown
        self.overwrite = overwrite
        self.inputs = [Path(i) for i in inputs if not _is_url(i)]
        self.folder = folder
        self.owned = owned
        self.whole_folder = whole_folder
        self._lock = OutputLock(final, shown)

    # -- checks ----------------------------------------------------------------------
    def check(self) -> None:
        """Raise ``OutputError`` (one line naming the output) if writing is not allowed."""
        if self.folder is None:
            self._check_file()
        else:
            self._check_sequence()
        if not self.locked and OutputLock.held_elsewhere(self.final):
            raise OutputLock.busy(self.shown)

    @property
    def locked(self) -> bool:
        return self._lock.held

    def _check_file(self) -> None:
        final = self.final
        _safe_path.check_file_target(final, self.shown)
        for inp in self.inputs:
            if _same(inp, final):
                raise OutputError(f"cannot write {self.shown}: it is the input {inp}; choose another output name")
        if (final.exists() or final.is_symlink()) and not self.overwrite:
            raise OutputError(f"{self.shown} exists; {OVERWRITE_HINT}")

    def _check_sequence(self) -> None:
        folder, owned = self.folder, self.owned
        assert folder is not None and owned is not None
        for inp in self.inputs:
            if _same(inp, folder) or (_same(inp.parent, folder) and owned(inp.name)):
                raise OutputError(f"cannot write {self.shown}: it holds the input {inp}; choose another output")
        if not folder.is_dir():
            return
        names = [p.name for p in folder.iterdir()]
        if self.whole_folder:
            foreign = sorted(n for n in names if not owned(n))
            if foreign:
                raise OutputError(
                    f"cannot write {self.shown}: the folder holds files that are not a PNG sequence "
                    f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); use an empty or new folder"
                )
        if any(owned(n) for n in names) and not self.overwrite:
            raise OutputError(f"{self.shown} already holds a PNG sequence; {OVERWRITE_HINT}")

    def existing_files(self) -> list[Path]:
        """The files of an earlier sequence that ``overwrite`` replaces."""
        if self.folder is None or self.owned is None or not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if self.owned(p.name) and p.is_file()]

    # -- open / close ----------------------------------------------------------------
    def acquire(self) -> Path:
        """Lock the output, recover stale temporaries, check again; the temporary path."""
        self._lock.acquire()
        try:
            self._recover_stale()
            self.check()
        except BaseException:
            self._lock.release()
            raise
        return _safe_path.temp_sibling(self.final)

    def release(self) -> None:
        self._lock.release()

    def _recover_stale(self) -> None:
        recover_stale(self.final)


def recover_stale(final: Path) -> list[Path]:
    """Temporary outputs of ``final`` left by writers that died (kill -9, power cut): the
    ones that play are renamed to ``NAME.partial.EXT``, the others removed, each with a
    note. Returns the recovered paths."""
    recovered: list[Path] = []
    rx = re.compile(rf"\.{re.escape(final.stem)}\.tmp-(\d+){re.escape(final.suffix)}")
    parent = final.parent
    if not parent.is_dir():
        return recovered
    for tmp in parent.iterdir():
        m = rx.fullmatch(tmp.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        pid = int(m.group(1))
        frames = drop_truncated_pngs(tmp) if tmp.is_dir() else playable_frames(tmp)
        if frames == 0:
            _safe_path.discard(tmp)
            log.warning("note: removed %s, left by a writer that stopped (process %d), no playable frames", tmp, pid)
            continue
        dest = _safe_path.partial_name(final)
        if dest.exists():
            dest = final.with_name(f"{final.stem}.partial-{pid}{final.suffix}")
        os.replace(tmp, dest)
        log.warning("note: recovered %s (%d frames) from a writer that stopped (process %d)", dest, frames, pid)
        recovered.append(dest)
    return recovered
