"""The settings of ``streammat serve``: an HTTP address and named pipelines.

Each pipeline is a ``PipelineSettings`` with the live defaults (``LiveConfig``: real
time, batches of 1, smoothing on), so every ``process``/``live`` option is a key with the
same name, type and check. The whole file is validated before anything starts, and an
error is one line naming the file, the key path (``pipelines.cam1.batch_size``) and what
was expected::

    http: 127.0.0.1:9100
    pipelines:
      cam1: {source: /data/clip.mp4, realtime: true, loop: true, publish: tcp://127.0.0.1:5601}
      cam2: {source: zmq+tcp://127.0.0.1:5700, output: /data/cam2.mov}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import ClusterSettings, LiveConfig, describe_error, is_model_path, read_yaml
from ..errors import ConfigError
from .scheduler import IN_FLIGHT

__all__ = [
    "ServeConfig",
    "ServePipeline",
    "load_serve_config",
    "parse_http",
    "pipeline_settings",
    "check_unique",
    "resolve_paths",
    "DEFAULT_HTTP",
]

DEFAULT_HTTP = "127.0.0.1:9100"
#: pipeline names appear in metric labels, URLs and log lines
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '_', '.' or '-'"
_HTTP_PATTERN = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")
#: the default name of the job database, beside the config file
STATE_FILE = "streammat-state.sqlite"


class ServePipeline(LiveConfig):
    """One pipeline of the service: ``streammat live``'s settings, with a required source."""

    source: str = Field(min_length=1, validation_alias=AliasChoices("source", "camera", "input"))
    #: seconds without any message (frames or the publisher's idle heartbeats) before a
    #: ZeroMQ upstream counts as gone and the pipeline restarts; it bounds the wait for the
    #: first frame too, so a stop never waits on an absent publisher for long
    source_timeout: Annotated[float, Field(gt=0)] | None = 5.0

    @field_validator("source", mode="before")
    @classmethod
    def _camera_index(cls, value: Any) -> Any:
        # `source: 0` in YAML is the camera index, as `--camera 0` is on the command line
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        return value

    @property
    def has_output(self) -> bool:
        return bool(self.output or self.publish or self.preview or self.virtual_camera is not None)


class ServeConfig(BaseModel):
    """The whole service file."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    #: HOST:PORT of /metrics, /healthz, /readyz and the control API
    http: str = DEFAULT_HTTP
    pipelines: dict[str, ServePipeline] = Field(default_factory=dict)
    #: frames of all streams sharing one model in one model call (unset: 8 on a GPU, one
    #: stream's request a call on the CPU; see ``pool``), and how long a waiting frame may
    #: be held for others to join it
    max_batch: Annotated[int, Field(ge=1, le=256)] | None = None
    max_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 4.0
    #: OS niceness added to the threads that run a shared model's calls on the CPU, so the
    #: streams' own threads come first (0: the same priority as the rest of the service,
    #: for machines shared with CPU-bound jobs, which a niced model yields to as well)
    model_nice: Annotated[int, Field(ge=0, le=19)] = 10
    #: requests each stream may have out to its shared model at once (frame rate against
    #: latency; see ``scheduler.IN_FLIGHT``)
    in_flight: Annotated[int, Field(ge=1, le=8)] = IN_FLIGHT
    #: restart delays of a failed pipeline: doubling from the first to the second
    backoff_min: Annotated[float, Field(gt=0, le=600)] = 0.5
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 30.0
    log_format: Literal["text", "json"] = "text"
    #: the control API: job database (SQLite), folders jobs may read and write, how many
    #: jobs run at once, bearer token (None: no authentication)
    state: str | None = None
    roots: list[str] = Field(default_factory=list)
    max_jobs: Annotated[int, Field(ge=1, le=64)] = 1
    token: str | None = None
    #: run every file job on Ray with these settings (a job's ``cluster`` option runs just
    #: that job on Ray, with these settings when given)
    cluster: ClusterSettings | None = None

    @field_validator("http")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_http(value)
        return value

    @field_validator("pipelines")
    @classmethod
    def _names(cls, value: dict[str, ServePipeline]) -> dict[str, ServePipeline]:
        for name in value:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"pipeline name {name!r}: expected {NAME_RULE}")
        return value

    @property
    def host(self) -> str:
        return parse_http(self.http)[0]

    @property
    def port(self) -> int:
        return parse_http(self.http)[1]


def parse_http(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` → ``(host, port)``; raises ``ValueError`` with what is expected."""
    m = _HTTP_PATTERN.match(value)
    if not m or int(m["port"]) > 65535:
        raise ValueError(f"expected HOST:PORT with a port 0-65535 (e.g. {DEFAULT_HTTP})")
    return m["host"].strip("[]"), int(m["port"])


def _fields_at(loc: tuple[Any, ...]) -> set[str]:
    """The valid keys where an unknown key was found, for the 'did you mean' hint."""
    if len(loc) >= 3 and loc[0] == "pipelines":
        return set(ServePipeline.model_fields)
    if len(loc) >= 2 and loc[0] == "cluster":
        return set(ClusterSettings.model_fields)
    return set(ServeConfig.model_fields)


def _one_line(exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "missing":
        return f"{where}: {loc}: required setting is missing"
    if err["type"] == "value_error":
        return f"{where}: {loc}: {str(err['ctx']['error'])}, got {err.get('input')!r}"
    return describe_error(exc, _fields_at(tuple(err["loc"])), where=where)


def pipeline_settings(name: str, values: Any, *, where: str = "pipeline") -> ServePipeline:
    """One pipeline's settings from a mapping (the control API adds pipelines this way)."""
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: pipelines.{name}: expected a pipeline name of {NAME_RULE}")
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: pipelines.{name}: expected a mapping of settings, got {type(values).__name__}")
    try:
        settings = ServeConfig(pipelines={name: values}).pipelines[name]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, where)) from None
    _require_output(name, settings, where)
    return settings


def _require_output(name: str, settings: ServePipeline, where: str) -> None:
    if not settings.has_output:
        raise ConfigError(
            f"{where}: pipelines.{name}: nothing to write; expected output, publish, preview or virtual_camera"
        )


def check_unique(config: ServeConfig, where: str) -> None:
    """Two pipelines cannot bind the same endpoint or write the same file."""
    seen: dict[str, str] = {}
    for name, p in config.pipelines.items():
        claims = [("publish", url) for url in p.publish]
        if p.output:
            claims.append(("output", str(Path(p.output).expanduser().resolve())))
        for key, value in claims:
            other = seen.setdefault(f"{key}:{value}", name)
            if other != name:
                shown = value if key == "publish" else p.output
                raise ConfigError(f"{where}: pipelines.{name}.{key}: {shown} is already used by pipeline {other!r}")


def _local(value: str) -> bool:
    """A relative path on this host (not a URL, a camera index, stdin or ``~/...``)."""
    return not (value == "-" or value.isdigit() or "://" in value or value.startswith("~") or Path(value).is_absolute())


def _image_background(value: str, folder: Path) -> bool:
    """A background that names an image file in ``folder`` rather than a colour or a blur
    (the order ``parse_background`` reads them in)."""
    from ..sinks.compositing import names_image

    return names_image(value) and (folder / value).is_file()


def resolve_paths(config: ServeConfig, folder: Path) -> ServeConfig:
    """Every relative path of a service file, taken from the file's folder (as
    docker-compose does) rather than from wherever the service was started: pipeline
    sources, outputs, background images, model files and key folders, the job database
    and the roots. URLs, camera indexes and absolute paths stay as they are."""

    def at(value: str) -> str:
        return str(folder / value) if _local(value) else value

    pipelines = {}
    for name, p in config.pipelines.items():
        update: dict[str, Any] = {"source": at(p.source)}
        if p.output:
            update["output"] = at(p.output)
        if p.background and _local(p.background) and _image_background(p.background, folder):
            update["background"] = at(p.background)
        if is_model_path(p.model):
            update["model"] = at(p.model)
        for key in ("source_secure", "publish_secure"):
            if getattr(p, key):
                update[key] = at(getattr(p, key))
        pipelines[name] = p.model_copy(update=update)
    update = {"pipelines": pipelines, "roots": [at(r) for r in config.roots] or [str(folder)]}
    update["state"] = at(config.state) if config.state else str(folder / STATE_FILE)
    return config.model_copy(update=update)


def load_serve_config(path: str | Path) -> ServeConfig:
    """Read and validate a service file. Relative paths in it are taken from its folder
    (``resolve_paths``), and so are the defaults of ``state`` and ``roots``."""
    p = Path(path)
    where = str(p)
    data = read_yaml(p, expected="a mapping with http: and pipelines:")
    pipelines = data.get("pipelines")
    if pipelines is None and "pipelines" in data:
        data = {k: v for k, v in data.items() if k != "pipelines"}
    elif isinstance(pipelines, dict):
        for name, values in pipelines.items():
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise ConfigError(f"{where}: pipelines.{name}: expected a pipeline name of {NAME_RULE}")
            if not isinstance(values, dict):
                raise ConfigError(
                    f"{where}: pipelines.{name}: expected a mapping of settings (source, publish, ...), "
                    f"got {type(values).__name__}"
                )
    try:
        config = ServeConfig(**{str(k): v for k, v in data.items()})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, where)) from None
    config = resolve_paths(config, p.resolve().parent)
    for name, settings in config.pipelines.items():
        _require_output(name, settings, where)
    if config.backoff_max < config.backoff_min:
        raise ConfigError(
            f"{where}: backoff_max: expected >= backoff_min ({config.backoff_min:g}), got {config.backoff_max:g}"
        )
    check_unique(config, where)
    return config
