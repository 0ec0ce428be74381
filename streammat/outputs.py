"""Where each of several inputs is written inside an output folder."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .sinks._codecs import EXTENSIONS

__all__ = ["output_for", "DEFAULT_FOLDER_FORMAT"]

#: the format of files written into a folder when ``--format`` is not given
DEFAULT_FOLDER_FORMAT = "prores"


def output_for(input: str | Path, folder: str | Path, fmt: str | None) -> Path:
    """``folder/<input name without extension>.<format's extension>`` (a PNG folder for png)."""
    fmt = fmt or DEFAULT_FOLDER_FORMAT
    stem = Path(str(input)).stem
    if fmt == "png":
        return Path(folder) / stem
    ext = next((e for e, f in EXTENSIONS.items() if f == fmt), None)
    if ext is None:
        raise ConfigError(
            f"--format: {fmt!r} cannot be written into a folder; use one of {', '.join(EXTENSIONS.values())}"
        )
    return Path(folder) / f"{stem}{ext}"
