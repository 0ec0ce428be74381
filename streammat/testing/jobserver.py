"""A job server for tests: the control API on a real uvicorn server on loopback.

``serve_in_thread(app)`` runs an app in this process (on a free port) and returns its URL
and a stop function; ``python -m streammat.testing.jobserver --state DB --root DIR`` runs
a job server in its own process (for tests that kill it), printing ``listening on URL``
once it accepts connections.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["create_app", "serve_in_thread", "main"]

_START_TIMEOUT = 30.0


def create_app(control: Any) -> Any:
    """A FastAPI app with nothing but the control API and the dashboard."""
    from fastapi import FastAPI

    from ..service.api import install

    app = FastAPI(title="streammat", version="1")
    install(app, control)
    return app


def _server(app: Any, *, signals: bool) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    if not signals:  # a server in a thread: signals belong to the main thread's owner
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


def _bind(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def serve_in_thread(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` on 127.0.0.1 (a free port) from a thread; returns (url, stop)."""
    sock = _bind()
    server = _server(app, signals=False)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sm-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("the test server did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def main(argv: list[str] | None = None) -> int:
    import logging

    from ..service.api import Control

    parser = argparse.ArgumentParser(prog="python -m streammat.testing.jobserver")
    parser.add_argument("--state", required=True, help="job database (SQLite)")
    parser.add_argument("--root", action="append", required=True, help="folder jobs may use (repeatable)")
    parser.add_argument("--max-jobs", type=int, default=1)
    parser.add_argument("--token")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    control = Control.start(state=args.state, roots=args.root, max_jobs=args.max_jobs, token=args.token)
    sock = _bind()
    server = _server(create_app(control), signals=True)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        control.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
