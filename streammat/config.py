"""Typed configuration: frozen dataclasses loaded from ``configs/*.yaml``.

Command-line options override file values; unknown keys are an error (a typo in a
config file must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["ProcessConfig", "LiveConfig", "load_config", "override"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class ProcessConfig:
    """Settings of ``streammat process`` (and the library's defaults)."""

    model: str = "selfie"
    device: str = "auto"
    #: which runner runs the model: auto, ort (onnxruntime) or torch (the graph as a torch module)
    backend: str = "auto"
    batch_size: int = 8
    queue_depth: int = 2
    #: False selects rembg's exact per-frame path instead of the batched fast path
    fast: bool = True
    #: alpha video codec override (e.g. "prores" for the faster ProRes encoder)
    codec: str | None = None
    format: str | None = None
    background: str | None = None
    matte: bool = False
    #: onnxruntime intra-op threads; None plans them from the core count
    threads: int | None = None
    #: temporal EMA of the mask (0 = off, the default for files), threshold and feather
    smoothing: float = 0.0
    threshold: float | None = None
    feather: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.batch_size > 256:
            raise ConfigError(f"batch_size must be between 1 and 256, got {self.batch_size}")
        if self.queue_depth < 1:
            raise ConfigError(f"queue_depth must be at least 1, got {self.queue_depth}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.feather < 0:
            raise ConfigError(f"feather must be >= 0, got {self.feather}")

    def replace(self, **changes: Any) -> ProcessConfig:
        """A copy with ``changes`` applied; None values leave a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    """Settings of ``streammat live`` (the ``live:`` section of a config file)."""

    camera: str = "0"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    #: seconds without a new frame before the camera counts as lost
    watchdog: float = 2.0
    reconnect: bool = True
    model: str = "selfie"
    device: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    batch_size: int = 1
    #: seconds after which a partial batch is sent (batch_size > 1)
    flush_after: float = 0.02
    smoothing: float = 0.5
    threshold: float | None = None
    feather: int = 0
    every: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.feather < 0 or self.every < 1:
            raise ConfigError(f"feather must be >= 0 and every >= 1, got {self.feather} and {self.every}")
        if self.watchdog <= 0:
            raise ConfigError(f"watchdog must be > 0, got {self.watchdog}")


_SECTIONS = {ProcessConfig: "process", LiveConfig: "live"}


def load_config(path: str | Path | None, cls: type[T] = ProcessConfig) -> T:  # type: ignore[assignment]
    """Load ``cls`` from a YAML file: its section (``process:``, ``live:``) or, for a file
    without sections, its top-level mapping."""
    if path is None:
        return cls()
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings")
    name = _SECTIONS.get(cls)  # type: ignore[call-overload]
    sectioned = any(k in data for k in _SECTIONS.values())
    section = (data.get(name) or {}) if sectioned else data
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return cls(**section)
    except TypeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def override(cfg: T, options: object) -> T:
    """``cfg`` with every field that ``options`` (e.g. parsed command-line arguments) sets
    to something other than None; the result is validated like any config."""
    changes = {f.name: v for f in fields(cfg) if (v := getattr(options, f.name, None)) is not None}  # type: ignore[arg-type]
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]
