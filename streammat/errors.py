"""The streammat error tree.

Every failure a user can cause (bad input, missing model, unwritable output, broken
network peer, bad configuration) is a ``StreammatError`` subclass. Library errors are
translated at the boundary with ``raise ... from exc`` so the CLI can print one line.
"""

from __future__ import annotations

__all__ = [
    "StreammatError",
    "InputError",
    "ModelError",
    "OutputError",
    "TransportError",
    "ConfigError",
    "Interrupted",
]


class StreammatError(Exception):
    """Base class of every error streammat raises on purpose."""


class InputError(StreammatError):
    """A source cannot be opened or decoded (missing file, not a video, corrupt data)."""


class ModelError(StreammatError):
    """A model cannot be found, obtained, converted or run."""


class OutputError(StreammatError):
    """A sink cannot be opened, written or finalized."""


class TransportError(StreammatError):
    """A ZeroMQ endpoint, key or peer problem."""


class ConfigError(StreammatError):
    """An option or configuration file is invalid."""


class Interrupted(StreammatError):
    """The run was stopped by the user (Ctrl-C / SIGINT / SIGTERM) before the end."""
