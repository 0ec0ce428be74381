"""The control API: file jobs, live pipelines, previews and the dashboard, on the service's
FastAPI app.

``install(app, control)`` adds the routes, the JSON error shape (``{"error": "one line"}``
for every failure, validation included) and the request-size limit. Every route but the
dashboard's static files requires the bearer token when the service has one; a browser's
image requests may carry it in a cookie, but only for reading.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import ClusterSettings
from ..errors import ConfigError, StreammatError
from .auth import TOKEN_COOKIE, service_token, token_matches
from .job_runner import JobRunner, job_settings
from .jobs import FINISHED, JobNotFound, JobStateError, JobStore
from .limits import MAX_BODY_BYTES, BodyLimit
from .paths import PathNotAllowed, Roots
from .preview import BOUNDARY, mjpeg_stream, placeholder, render
from .schemas import (
    ERROR_RESPONSES,
    PIPELINE_NAME,
    ErrorBody,
    JobCreated,
    JobList,
    JobRequest,
    JobView,
    Message,
    PipelineList,
    PipelineRequest,
    PipelineView,
)

__all__ = ["Control", "ServiceLike", "control_router", "install", "ApiError"]

log = logging.getLogger(__name__)

#: seconds a cancel request waits for the job's outputs to be finalized before answering
_CANCEL_WAIT = 15.0
_DASHBOARD = "dashboard"
_NOT_FOUND_OR_CONFLICT: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}
MJPEG_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class ServiceLike(Protocol):
    """What the API needs from the live-pipeline supervisor."""

    def pipelines(self) -> list[Any]: ...
    def add_pipeline(self, name: str, settings: dict[str, Any]) -> Any: ...
    def remove_pipeline(self, name: str) -> Any: ...
    def restart_pipeline(self, name: str) -> Any: ...
    def latest_frame(self, name: str) -> Any: ...


class ApiError(Exception):
    """An HTTP error with its one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Control:
    """Everything the routes act on. ``service`` is None for a server of file jobs only."""

    store: JobStore
    runner: JobRunner
    roots: Roots
    service: ServiceLike | None = None
    #: the token every request must carry (None: none needed)
    token: str | None = None
    #: the token was made on this start: the operator has to be shown it once
    token_generated: bool = False

    @classmethod
    def start(
        cls,
        *,
        state: str | Path,
        roots: list[str] | list[Path],
        max_jobs: int = 1,
        token: str | None = None,
        host: str = "127.0.0.1",
        service: ServiceLike | None = None,
        cluster: ClusterSettings | None = None,
    ) -> Control:
        """Open the job database at ``state``, recover what a dead process left running and
        start the job workers. ``token`` is the configured one; ``host`` the address the
        service binds, which decides whether a token is needed (see ``auth``); ``cluster``
        runs every job on Ray (see ``cluster_jobs``)."""
        checked = Roots(roots)
        required, generated = service_token(token, host=host, state_path=state)
        store = JobStore(state)
        runner = JobRunner(store, max_jobs=max_jobs, roots=checked, cluster=cluster)
        runner.start()
        return cls(
            store=store, runner=runner, roots=checked, service=service, token=required, token_generated=generated
        )

    def close(self) -> None:
        """Stop the running jobs (they become ``interrupted``) and close the database."""
        self.runner.close()
        self.store.close()


_STATUS = [(JobNotFound, 404), (PathNotAllowed, 403), (JobStateError, 409), (ConfigError, 422)]


def _status_of(exc: StreammatError) -> int:
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status, headers=headers)


def _validation_line(exc: RequestValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
    msg = str(err.get("msg", "invalid")).replace("Input should be", "expected")
    return f"{loc}: {msg}"


def install(app: FastAPI, control: Control) -> None:
    """Add the control API and the dashboard to ``app``."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, str(exc), headers)

    async def on_streammat_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StreammatError)
        return _error(_status_of(exc), str(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error(422, _validation_line(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StreammatError, on_streammat_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.include_router(control_router(control))


def control_router(control: Control) -> APIRouter:
    def authorize(request: Request) -> None:
        if control.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and token_matches(control.token, given.strip()):
            return
        if request.method == "GET" and token_matches(control.token, request.cookies.get(TOKEN_COOKIE)):
            return
        raise ApiError(401, "a valid API token is required: send 'Authorization: Bearer TOKEN'")

    api = APIRouter(dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)
    JobId = PathParam(ge=1, le=2**62)
    Name = PathParam(pattern=PIPELINE_NAME)

    # -- jobs -----------------------------------------------------------------------
    @api.post("/jobs", status_code=201, response_model=JobCreated, tags=["jobs"], responses={409: {"model": ErrorBody}})
    def submit_job(body: JobRequest) -> JobCreated:
        """Queue a file for matting; it runs when a job slot is free, oldest first."""
        source = control.roots.input(body.input)
        target = control.roots.output(body.output)
        options = _confine_files(dict(body.options), control.roots, "options")
        job_settings(str(source), str(target), options)  # every option checked now, not at run time
        if target.is_file() and not options.get("overwrite"):
            raise ApiError(409, f"output: {body.output!r} exists; set options.overwrite to replace it")
        job = control.store.submit(str(source), str(target), options)
        control.runner.wake()
        return JobCreated(id=job.id)

    @api.get("/jobs", response_model=JobList, tags=["jobs"])
    def list_jobs(limit: int = Query(100, ge=1, le=1000)) -> JobList:
        """The newest jobs first."""
        return JobList(jobs=[JobView.of(j) for j in control.store.list(limit=limit)])

    @api.get("/jobs/{job_id}", response_model=JobView, tags=["jobs"], responses={404: {"model": ErrorBody}})
    def show_job(job_id: int = JobId) -> JobView:
        return JobView.of(control.store.get(job_id))

    @api.delete("/jobs/{job_id}", response_model=JobView, tags=["jobs"], responses={404: {"model": ErrorBody}})
    async def cancel_job(job_id: int = JobId) -> JobView:
        """Cancel: a queued job never starts; a running one stops and its output is
        finalized as a playable partial file, named in the answer."""
        job = await asyncio.to_thread(control.runner.cancel, job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CANCEL_WAIT
        while job.state not in FINISHED and loop.time() < deadline:
            await asyncio.sleep(0.1)
            job = await asyncio.to_thread(control.store.get, job_id)
        return JobView.of(job)

    @api.post(
        "/jobs/{job_id}/retry",
        response_model=JobView,
        tags=["jobs"],
        responses=_NOT_FOUND_OR_CONFLICT,
    )
    def retry_job(job_id: int = JobId) -> JobView:
        """Queue a failed, cancelled or interrupted job again."""
        job = control.store.retry(job_id)
        control.runner.wake()
        return JobView.of(job)

    # -- pipelines ------------------------------------------------------------------
    def service() -> ServiceLike:
        if control.service is None:
            raise ApiError(409, "this service runs file jobs only; it has no live pipelines")
        return control.service

    def known(name: str) -> ServiceLike:
        svc = service()
        if not any(PipelineView.of(p).name == name for p in svc.pipelines()):
            raise ApiError(404, f"no pipeline named {name!r}")
        return svc

    @api.get("/pipelines", response_model=PipelineList, tags=["pipelines"])
    def list_pipelines() -> PipelineList:
        if control.service is None:
            return PipelineList(pipelines=[])
        return PipelineList(pipelines=[PipelineView.of(p) for p in control.service.pipelines()])

    @api.post(
        "/pipelines", status_code=201, response_model=Message, tags=["pipelines"], responses={409: {"model": ErrorBody}}
    )
    def add_pipeline(body: PipelineRequest) -> Message:
        """Start a live pipeline (settings as in `streammat live`)."""
        svc = service()
        if any(PipelineView.of(p).name == body.name for p in svc.pipelines()):
            raise ApiError(409, f"a pipeline named {body.name!r} exists; remove it first")
        settings = _confine_files(dict(body.settings), control.roots, "settings")
        if isinstance(settings.get("output"), str):
            settings["output"] = str(control.roots.output(settings["output"], what="settings.output"))
        source = settings.get("source")
        if isinstance(source, str) and _is_file_source(source):
            settings["source"] = str(control.roots.input(source, what="settings.source"))
        svc.add_pipeline(body.name, settings)
        return Message(message=f"pipeline {body.name!r} started")

    @api.delete("/pipelines/{name}", response_model=Message, tags=["pipelines"], responses={404: {"model": ErrorBody}})
    def remove_pipeline(name: str = Name) -> Message:
        known(name).remove_pipeline(name)
        return Message(message=f"pipeline {name!r} removed")

    @api.post(
        "/pipelines/{name}/restart", response_model=Message, tags=["pipelines"], responses={404: {"model": ErrorBody}}
    )
    def restart_pipeline(name: str = Name) -> Message:
        known(name).restart_pipeline(name)
        return Message(message=f"pipeline {name!r} restarted")

    @api.get(
        "/pipelines/{name}/preview.jpg",
        tags=["pipelines"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorBody}},
    )
    def preview_image(name: str = Name) -> Response:
        """The newest frame: foreground over a checkerboard, matte beside it."""
        frame = known(name).latest_frame(name)
        data = placeholder() if frame is None else render(*frame)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @api.get(
        "/pipelines/{name}/preview.mjpg",
        tags=["pipelines"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
            404: {"model": ErrorBody},
        },
    )
    def preview_stream(request: Request, name: str = Name) -> StreamingResponse:
        """A live MJPEG preview for an ``<img>``; ends when the client leaves."""
        svc = known(name)
        stream = mjpeg_stream(lambda: svc.latest_frame(name), request.is_disconnected)
        return StreamingResponse(
            stream,
            media_type=MJPEG_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    # -- dashboard ------------------------------------------------------------------
    site = APIRouter(include_in_schema=False)

    @site.get("/", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(_asset("index.html"), headers={"Cache-Control": "no-store"})

    @site.get("/dashboard/{file}")
    def dashboard_file(file: str) -> Response:
        suffix = Path(file).suffix
        if file not in ("app.js", "style.css"):
            raise ApiError(404, f"no dashboard file {file!r}")
        return Response(_asset(file), media_type=_STATIC_TYPES[suffix], headers={"Cache-Control": "no-store"})

    root = APIRouter()
    root.include_router(api)
    root.include_router(site)
    return root


def _confine_files(settings: dict[str, Any], roots: Roots, prefix: str) -> dict[str, Any]:
    """A caller's model file and background image, resolved inside the roots: the service
    reads them, so a caller must not name files elsewhere on the host."""
    from ..config import is_model_path
    from ..sinks.compositing import names_image

    for key, names_file in (("model", is_model_path), ("background", names_image)):
        value = settings.get(key)
        if isinstance(value, str) and names_file(value):
            settings[key] = str(roots.input(value, what=f"{prefix}.{key}"))
    return settings


def _is_file_source(source: str) -> bool:
    """A file a pipeline would read (confined to the roots), rather than a camera or a URL."""
    return not (source.isdigit() or source.startswith("/dev/video") or "://" in source)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(_DASHBOARD, name).read_text(encoding="utf-8")
