"""Typed settings: one pydantic model for command-line options, config files, the library
façade and the service.

``PipelineSettings`` describes one stream: where frames come from, how they are matted,
and where they go. ``ProcessConfig`` and ``LiveConfig`` are the same fields with the
defaults of ``streammat process`` (files: batches of 8, no smoothing) and ``streammat
live`` (a camera: batch 1, smoothing on). Types are strict — ``matte: "false"`` or
``batch_size: 8.5`` are errors, not silent conversions — and an unknown key names the
closest valid one. Every error is one ``ConfigError`` line naming the file or flag, the
key, what was given and what is allowed.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .limits import MAX_PIXELS

__all__ = [
    "DEVICES",
    "BACKENDS",
    "REFINE_MODES",
    "PUBLISH_LAYOUTS",
    "COMPRESSIONS",
    "MattingSettings",
    "PipelineSettings",
    "ProcessConfig",
    "LiveConfig",
    "ClusterSettings",
    "CLUSTER_ADDRESS",
    "load_config",
    "read_yaml",
    "settings_from",
    "describe_error",
    "is_model_path",
]

#: where the model runs, and which runner runs the graph there (onnxruntime or torch)
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
BACKENDS = ("auto", "ort", "torch")
#: edge refinement: none, or the colour-guided filter
REFINE_MODES = ("none", "guided")
#: how published frames carry their alpha, and their optional lossless compression
PUBLISH_LAYOUTS = ("rgba", "rgb+a", "a")
COMPRESSIONS = ("none", "zstd", "zlib")

PositiveInt = Annotated[int, Field(ge=1)]


def is_model_path(model: str) -> bool:
    """A ``model`` setting names an ONNX file (rather than a registered model name)."""
    return model.endswith(".onnx") or os.sep in model


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class MattingSettings(_Strict):
    """How frames are matted: model, device, batching and the matte controls."""

    model: str = Field("selfie", min_length=1, description="model name or path to an .onnx file")
    device: Literal[DEVICES] = "auto"  # type: ignore[valid-type]
    backend: Literal[BACKENDS] = "auto"  # type: ignore[valid-type]
    #: onnxruntime intra-op threads; None plans them from the core count
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=256)] = 8
    #: False selects rembg's exact per-frame path instead of the batched fast path
    fast: bool = True
    #: temporal EMA of the mask (0 = off), binarize threshold, edge feather in pixels
    smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    feather: Annotated[int, Field(ge=0, le=100)] = 0
    #: run the model on every N-th frame and reuse its mask in between
    every: Annotated[int, Field(ge=1, le=1000)] = 1
    #: grey levels of change from which smoothing lets a pixel follow the new mask; None: a plain EMA
    motion: Annotated[float, Field(gt=0, le=255)] | None = 12.0
    #: edge refinement at full resolution guided by the colour frame
    refine: Literal[REFINE_MODES] = "none"  # type: ignore[valid-type]

    @property
    def temporal(self) -> bool:
        """Whether any matte control is on (the matter then keeps state across frames)."""
        return bool(
            self.smoothing or self.threshold is not None or self.feather or self.every > 1 or self.refine != "none"
        )


class PipelineSettings(MattingSettings):
    """One stream: source → matting → outputs. Every ``process``/``live`` option has a key."""

    # -- source ------------------------------------------------------------------
    #: a video file or URL, an image sequence, a camera (index, /dev/videoN), or zmq+tcp://…
    source: str = Field("", validation_alias=AliasChoices("source", "camera", "input"))
    #: read a file as a live camera: at its own rate, newest frame first
    realtime: bool = False
    #: start a file again at its end (with realtime)
    loop: bool = False
    max_pixels: PositiveInt = MAX_PIXELS
    #: requested capture size and rate (cameras)
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    fps: Annotated[float, Field(gt=0, le=1000)] | None = None
    #: seconds without a new frame before a camera counts as lost; reopen it then
    watchdog: Annotated[float, Field(gt=0, le=3600)] = 2.0
    reconnect: bool = True
    #: stop after the source delivered this many frames / this many seconds
    frames: PositiveInt | None = None
    duration: Annotated[float, Field(gt=0)] | None = None
    #: ZeroMQ source: topic prefix, seconds of silence that end the stream, newest frame only, CURVE keys
    source_topic: str = ""
    source_timeout: Annotated[float, Field(gt=0)] | None = None
    source_latest: bool = False
    source_secure: str | None = None
    #: lossless ZeroMQ input: credit-based flow control with a publisher that offers it
    source_reliable: bool = False

    # -- pipeline ----------------------------------------------------------------
    #: batches buffered between decode, matting and encode
    queue_depth: Annotated[int, Field(ge=1, le=64)] = 2
    #: seconds after which a partial batch is sent (live sources with batch_size > 1)
    flush_after: Annotated[float, Field(gt=0, le=10)] | None = None

    # -- outputs -----------------------------------------------------------------
    output: str | None = None
    format: str | None = None
    codec: str | None = None
    background: str | None = None
    matte: bool = False
    overwrite: bool = False
    publish: tuple[str, ...] = ()
    topic: str = ""
    layout: Literal[PUBLISH_LAYOUTS] = "rgba"  # type: ignore[valid-type]
    compress: Literal[COMPRESSIONS] = "none"  # type: ignore[valid-type]
    publish_secure: str | None = None
    publish_hwm: PositiveInt | None = None
    publish_wait: Annotated[int, Field(ge=0, le=1000)] = 0
    #: also serve --reliable receivers (the pipeline waits for one that falls a backlog behind)
    publish_reliable: bool = False
    preview: bool = False
    #: virtual camera device ("" = the default device), None = off
    virtual_camera: str | None = None

    @field_validator("publish", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        # one URL or a list of them, in files and from the command line alike
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(value)
        return value


class ProcessConfig(PipelineSettings):
    """Settings of ``streammat process`` (the ``process:`` section of a config file)."""


class LiveConfig(PipelineSettings):
    """Settings of ``streammat live`` (the ``live:`` section): low latency and a steady matte."""

    source: str = Field("0", validation_alias=AliasChoices("source", "camera", "input"))
    realtime: bool = True
    batch_size: Annotated[int, Field(ge=1, le=256)] = 1
    queue_depth: Annotated[int, Field(ge=1, le=64)] = 1
    flush_after: Annotated[float, Field(gt=0, le=10)] | None = 0.02
    smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5


#: the Ray addresses ``--cluster`` and ``cluster.address`` accept
CLUSTER_ADDRESS = r"^(local|auto|ray://[^\s/]+:\d+)$"


class ClusterSettings(_Strict):
    """How ``streammat process --cluster`` spreads files over a Ray cluster (the ``cluster:``
    section). The matting itself is configured by the ``process:`` section."""

    #: ``local`` (start Ray here), ``auto`` (join the running cluster) or ``ray://HOST:10001``
    address: str = Field("local", pattern=CLUSTER_ADDRESS)
    #: frames per chunk; chunks start at keyframes, so they hold at least this many (but the last)
    chunk_frames: Annotated[int, Field(ge=1, le=1_000_000)] = 240
    #: model actors (each loads the model once); None: as many as the cluster's GPUs hold
    #: (``num_gpus`` each), else one per ``task_cpus`` CPUs when fused, else one
    actors: Annotated[int, Field(ge=1, le=1024)] | None = None
    #: decode, matte and encode each chunk inside a model actor (True), or decode and encode
    #: in CPU tasks that send the frames to the actors (False); None: fused when the cluster
    #: has no GPU
    fused: bool | None = None
    #: GPUs per model actor; None: 1 when the cluster has GPUs, else 0
    num_gpus: Annotated[float, Field(ge=0, le=8)] | None = None
    #: CPUs reserved per split model actor and per decode/encode task (a fused actor, which
    #: does a task's work, reserves ``task_cpus``). Split actors reserve none by default: a
    #: CPU an actor frees when it dies can be taken by a queued chunk task that then waits
    #: for the actor, and the actor could not restart (seen with 2 CPUs)
    actor_cpus: Annotated[float, Field(ge=0, le=256)] = 0.0
    task_cpus: Annotated[float, Field(gt=0, le=256)] = 1.0
    #: frames matted before each chunk (not written) so temporal smoothing starts warm
    warmup: Annotated[int, Field(ge=0, le=10_000)] = 16
    #: retries of a failed chunk, and restarts of a lost model actor
    retries: Annotated[int, Field(ge=0, le=100)] = 2


_SECTIONS: dict[type, str] = {ProcessConfig: "process", LiveConfig: "live", ClusterSettings: "cluster"}
T = TypeVar("T", bound=PipelineSettings)


def describe_error(exc: ValidationError, fields: set[str], *, where: str, flag: bool = False) -> str:
    """The first problem of a ``ValidationError`` as one line: where, key, given, allowed."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "settings"
    key = "--" + loc.replace("_", "-") if flag else loc
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(err["loc"][-1]), sorted(fields), n=1, cutoff=0.6)
        hint = f" (did you mean {('--' + close[0].replace('_', '-')) if flag else close[0]!r}?)" if close else ""
        return f"{where}: unknown setting {key!r}{hint}"
    given = err.get("input")
    shown = repr(given)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = err["msg"]
    if err["type"] == "literal_error":
        msg = msg.replace("Input should be", "expected")
    else:
        msg = msg.replace("Input should be", "expected").replace("Input", "value")
    return f"{where}: {key}: {msg}, got {shown}"


def settings_from(cls: type[T], values: dict[str, Any], *, where: str, flag: bool = False) -> T:
    """``cls(**values)`` with validation errors as one ``ConfigError`` line."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, set(cls.model_fields), where=where, flag=flag)) from None


def read_yaml(path: str | Path, *, expected: str = "a mapping of settings") -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} when empty); one ``ConfigError`` line naming
    the file for a file that cannot be read, is not text, not YAML or not a mapping."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a YAML text file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected {expected}, got {type(data).__name__}")
    return data


def read_config(path: str | Path, cls: type[PipelineSettings]) -> dict[str, Any]:
    """The mapping of settings for ``cls`` in a YAML file: its section (``process:``,
    ``live:``) or, for a file without sections, its top-level mapping."""
    p = Path(path)
    data = read_yaml(p)
    if not data:
        return {}
    name = _SECTIONS.get(cls, "process")
    if any(k in data for k in _SECTIONS.values()):
        unknown = sorted(str(k) for k in data if k not in _SECTIONS.values())
        if unknown:
            raise ConfigError(f"{p}: unknown section {unknown[0]!r}; expected {' or '.join(_SECTIONS.values())}")
        data = data.get(name) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: {name}: expected a mapping of settings, got {type(data).__name__}")
    elif not issubclass(cls, PipelineSettings):
        return {}  # a file without sections holds stream settings only
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{p}: setting names must be text, got {bad[0]!r}")
    return data


def load_config(path: str | Path | None, cls: type[T] = ProcessConfig) -> T:  # type: ignore[assignment]
    """Load ``cls`` from a YAML file (or its defaults when ``path`` is None)."""
    if path is None:
        return cls()
    return settings_from(cls, read_config(path, cls), where=str(path))


def merge(cls: type[T], path: str | Path | None, options: dict[str, Any]) -> T:
    """The defaults of ``cls``, overridden by the config file at ``path``, overridden by the
    ``options`` that were given (None values are left out): the one override rule of every
    command. A bad option names its flag; a bad file value names the file."""
    values = read_config(path, cls) if path is not None else {}
    file_settings = settings_from(cls, values, where=str(path)) if path is not None else None
    given = {k: v for k, v in options.items() if v is not None}
    try:
        cls(**given)  # options alone first, so a bad flag is reported as that flag
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] != "missing":
            raise ConfigError(describe_error(exc, set(cls.model_fields), where="streammat", flag=True)) from None
    base = file_settings.model_dump(exclude_unset=True) if file_settings is not None else {}
    return settings_from(cls, {**_by_field(cls, base), **given}, where=str(path) if path else "streammat")


def _by_field(cls: type[PipelineSettings], values: dict[str, Any]) -> dict[str, Any]:
    """Field names as keys (``camera:`` in a file is the ``source`` field)."""
    return {k: v for k, v in values.items() if k in cls.model_fields}
