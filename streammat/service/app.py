"""The service's HTTP server: one FastAPI app on uvicorn, in a thread of the serve process.

``create_app(service)`` serves ``/metrics`` (Prometheus text format), ``/healthz`` (the
process answers: 200) and ``/readyz`` (200 when every pipeline is running or has completed
its finite input, else 503 with each pipeline's state). Further routes — the control API —
are added to the same app with ``app.include_router(router)``; a route reaches the service
as ``request.app.state.service``.

``HttpServer`` binds the socket itself, so a port that is taken is one clear error before
anything starts, and runs uvicorn on a daemon thread (uvicorn leaves the process's signal
handlers alone off the main thread; the serve command owns SIGTERM and SIGHUP).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ..errors import OutputError
from .metrics import CONTENT_TYPE
from .runner import is_ready

__all__ = ["create_app", "HttpServer"]

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0


def create_app(service: Any) -> FastAPI:
    """The app with the monitoring routes; ``app.state.service`` is ``service``."""
    from .. import __version__

    app = FastAPI(title="streammat", version=__version__, description="Stream-processing video matting service")
    app.state.service = service

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        return Response(request.app.state.service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/healthz", tags=["monitoring"])
    def healthz() -> dict[str, str]:
        """The process is alive and answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["monitoring"])
    def readyz(request: Request) -> JSONResponse:
        """200 when every pipeline is running or has completed its file, else 503; the
        state of each pipeline."""
        states = {s.name: s.state for s in request.app.state.service.pipelines()}
        ready = is_ready(states.values())
        return JSONResponse({"ready": ready, "pipelines": states}, status_code=200 if ready else 503)

    return app


class HttpServer:
    """uvicorn serving ``app`` on ``host:port`` from a background thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind and serve; returns the address (``http://HOST:PORT``). Raises ``OutputError``."""
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OutputError(f"http: cannot listen on {self.host}:{self.port} ({exc.strerror or exc})") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sm-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise OutputError(f"http: the server on {self.host}:{self.port} did not start")
        url = f"http://{self.host}:{self.port}"
        log.info("serving /metrics, /healthz and /readyz on %s", url)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=1.0)
