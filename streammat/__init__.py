"""streammat: stream-processing video matting.

source ──► batcher ──► matter ──► sink(s)

>>> from streammat import Pipeline, FileSource, create_session, create_matter, create_sink
>>> session = create_session("selfie")
>>> Pipeline(FileSource("in.mp4"), create_matter(session), [create_sink("out.mov")]).run()
"""

from __future__ import annotations

from .batching import Batcher
from .config import ProcessConfig, load_config
from .errors import (
    ConfigError,
    InputError,
    Interrupted,
    ModelError,
    OutputError,
    StreammatError,
    TransportError,
)
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

__version__ = "0.1.0"

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
    # configuration, errors, helpers
    "ProcessConfig",
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
