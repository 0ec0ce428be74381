"""streammat: stream-processing video matting.

source ──► batcher ──► matter ──► sink(s)

>>> import streammat
>>> streammat.process("in.mp4", "out.mov")  # the one-call façade
>>> from streammat import Pipeline, FileSource, create_session, create_matter, create_sink
>>> session = create_session("selfie")
>>> Pipeline(FileSource("in.mp4"), create_matter(session), [create_sink("out.mov")]).run()

Names are imported on first use, so ``import streammat`` (and a subscriber script that
only needs ``streammat.subscribe``) does not load torch, OpenCV or PyAV.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    InputError,
    Interrupted,
    ModelError,
    OutputError,
    StreammatError,
    TransportError,
)

__version__ = "0.1.0"

#: public name → the module that defines it
_LAZY: dict[str, str] = {
    "Frame": "frames",
    "Batch": "frames",
    "MattedBatch": "frames",
    "StreamInfo": "frames",
    "FileSource": "sources.file",
    "CameraSource": "sources.camera",
    "ZmqSource": "sources.zmq",
    "open_source": "sources",
    "read_rgba": "readback",
    "Batcher": "batching",
    "create_session": "matting.sessions",
    "DEFAULT_MODEL": "matting.sessions",
    "create_matter": "matting",
    "BatchedMatter": "matting.batched",
    "RembgMatter": "matting.reference",
    "remove_background": "matting.reference",
    "TemporalMatter": "matting.temporal",
    "create_sink": "sinks",
    "NullSink": "sinks",
    "FORMATS": "sinks",
    "PublisherSink": "sinks.publisher",
    "subscribe": "transport.subscriber",
    "Pipeline": "pipeline",
    "Progress": "pipeline",
    "RunResult": "pipeline",
    "build_pipeline": "compose",
    "process": "compose",
    "PipelineSettings": "config",
    "ProcessConfig": "config",
    "LiveConfig": "config",
    "load_config": "config",
    "make_sample_clip": "sample",
}

__all__ = [
    # values
    "Frame",
    "Batch",
    "MattedBatch",
    "StreamInfo",
    # stages
    "FileSource",
    "CameraSource",
    "ZmqSource",
    "open_source",
    "read_rgba",
    "Batcher",
    "create_session",
    "create_matter",
    "BatchedMatter",
    "RembgMatter",
    "TemporalMatter",
    "remove_background",
    "DEFAULT_MODEL",
    "create_sink",
    "NullSink",
    "PublisherSink",
    "FORMATS",
    "subscribe",
    "Pipeline",
    "Progress",
    "RunResult",
    # one call, and the composition root behind it
    "process",
    "build_pipeline",
    # configuration, errors, helpers
    "PipelineSettings",
    "ProcessConfig",
    "LiveConfig",
    "load_config",
    "make_sample_clip",
    "StreammatError",
    "InputError",
    "ModelError",
    "OutputError",
    "TransportError",
    "ConfigError",
    "Interrupted",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streammat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .batching import Batcher
    from .compose import build_pipeline, process
    from .config import LiveConfig, PipelineSettings, ProcessConfig, load_config
    from .frames import Batch, Frame, MattedBatch, StreamInfo
    from .matting import create_matter
    from .matting.batched import BatchedMatter
    from .matting.reference import RembgMatter, remove_background
    from .matting.sessions import DEFAULT_MODEL, create_session
    from .matting.temporal import TemporalMatter
    from .pipeline import Pipeline, Progress, RunResult
    from .readback import read_rgba
    from .sample import make_sample_clip
    from .sinks import FORMATS, NullSink, create_sink
    from .sinks.publisher import PublisherSink
    from .sources import open_source
    from .sources.camera import CameraSource
    from .sources.file import FileSource
    from .sources.zmq import ZmqSource
    from .transport.subscriber import subscribe
