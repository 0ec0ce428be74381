"""Request and response bodies of the control API (they make its OpenAPI document).

Requests are bounded everywhere a caller chooses a size: path and string lengths, the
number of options, non-finite numbers refused. Every response has a model here, errors
included, so a client can validate whatever it gets.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from .jobs import STATES, Job
from .paths import MAX_PATH_CHARS

__all__ = [
    "ErrorBody",
    "JobRequest",
    "JobCreated",
    "JobView",
    "JobList",
    "PipelineRequest",
    "PipelineView",
    "PipelineList",
    "Message",
    "PIPELINE_NAME",
    "ERROR_RESPONSES",
]

#: a pipeline name: a URL path segment and a metrics label
PIPELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_OPTIONS = 32
MAX_OPTION_CHARS = 256

Path_ = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]
OptionName = Annotated[str, Field(min_length=1, max_length=64)]
OptionValue = (
    StrictBool
    | StrictInt
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, Field(max_length=MAX_OPTION_CHARS)]
    | None
)
SettingValue = OptionValue | Annotated[list[Annotated[str, Field(max_length=MAX_OPTION_CHARS)]], Field(max_length=16)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error: one line a person can act on."""

    error: str = Field(description="what went wrong, in one line")


class JobRequest(_Body):
    input: Path_ = Field(description="video file to matte, inside one of the service's roots")
    output: Path_ = Field(description="output file or folder; its folder must exist inside a root")
    options: Annotated[dict[OptionName, OptionValue], Field(max_length=MAX_OPTIONS)] = Field(
        default_factory=dict, description="settings of `streammat process` (model, batch_size, matte, …)"
    )


class JobCreated(BaseModel):
    id: int


class JobView(BaseModel):
    id: int
    state: str = Field(description=" | ".join(STATES))
    input: str
    output: str
    options: dict[str, Any]
    frames_done: int
    frames_total: int | None
    progress: float | None = Field(description="0..1 when the total is known")
    fps: float | None
    eta: float | None = Field(description="seconds left, while running")
    error: str | None
    output_path: str | None = Field(description="where the output is now (the partial file unless done)")
    partial: bool
    created: float
    started: float | None
    ended: float | None

    @classmethod
    def of(cls, job: Job) -> JobView:
        total = job.frames_total
        progress = None
        if job.state == "done":
            progress = 1.0
        elif total:
            progress = min(1.0, job.frames_done / total)
        values = {k: v for k, v in job.as_dict().items() if k in cls.model_fields}
        return cls(**values, progress=progress, output_path=job.result)


class JobList(BaseModel):
    jobs: list[JobView]


class PipelineRequest(_Body):
    name: Annotated[str, Field(pattern=PIPELINE_NAME)]
    settings: Annotated[dict[OptionName, SettingValue], Field(max_length=MAX_OPTIONS)] = Field(
        default_factory=dict, description="settings of `streammat live` (source, model, output, publish, …)"
    )


class PipelineView(BaseModel):
    name: str
    state: str
    fps: float | None = None
    frames: int | None = None
    drops: int | None = None
    latency_p50: float | None = Field(None, description="seconds, capture to output")
    latency_p95: float | None = None
    restarts: int | None = None
    last_error: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, status: Any) -> PipelineView:
        """From the supervisor's ``runner.PipelineStatus``."""
        return cls(**{k: v for k, v in status.as_dict().items() if k in cls.model_fields})


class PipelineList(BaseModel):
    pipelines: list[PipelineView]


class Message(BaseModel):
    message: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


#: declared on every route: the errors any request can meet (size, auth, validation)
ERROR_RESPONSES = _errors(400, 401, 403, 413, 422)
