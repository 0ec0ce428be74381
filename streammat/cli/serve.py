"""``streammat serve CONFIG.yaml`` — named pipelines in one long-running process.

The config (``configs/serve*.yaml``) is validated first, all of it (``--check`` stops
there): settings, model names, output formats, endpoints used twice. Then the HTTP server
starts (``/metrics``, ``/healthz``, ``/readyz``), then every pipeline, each on its own
threads, sharing one session per model. Signals: SIGHUP reloads the file and restarts
only the pipelines that changed (a broken file is reported and the running config
kept); SIGTERM or Ctrl-C stops every pipeline, finalizes every recording and exits
within 10 s (a second one exits at once).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TICK = 0.2  # seconds between checks of the signal flags


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run named pipelines as a service, with /metrics, /healthz and /readyz",
        description="Run the pipelines of CONFIG (see configs/serve.yaml) in one process: cameras, files "
        "and ZeroMQ streams in, recordings and ZeroMQ out, one shared session per model. SIGHUP reloads "
        "CONFIG (restarting only changed pipelines); SIGTERM stops and finalizes recordings.",
    )
    p.add_argument("config", metavar="CONFIG", help="YAML service file: http: and pipelines:")
    p.add_argument("--check", action="store_true", help="validate CONFIG and exit (0: valid, 2: invalid)")
    p.set_defaults(func=run)


def check(path: str, running: Any = None) -> Any:
    """The validated config, with every check that needs no model loaded and no device
    opened. Raises ``ConfigError`` naming the file and key. Pipelines that ``running`` (the
    config in service) already runs unchanged are not checked again: their outputs are
    theirs, locked while they write."""
    from ..compose import build_sinks
    from ..config import is_model_path
    from ..errors import ConfigError, StreammatError
    from ..matting.threads import plan_threads
    from ..service.config import load_serve_config

    config = load_serve_config(path)
    plan = plan_threads()
    names: list[str] | None = None
    for name, settings in config.pipelines.items():
        if running is not None and running.pipelines.get(name) == settings:
            continue
        where = f"{path}: pipelines.{name}"
        model = settings.model
        if is_model_path(model):
            if not Path(os.path.expanduser(model)).is_file():
                raise ConfigError(f"{where}.model: no such model file {model!r}")
        else:
            if names is None:
                from ..matting.sessions import known_model_names

                names = known_model_names()
            if model not in names:
                raise ConfigError(f"{where}.model: unknown model {model!r}; expected one of {', '.join(names)}")
        held = running is not None and any(p.output == settings.output for p in running.pipelines.values())
        if held:  # a running pipeline writes (and locks) this output: it is checked when it reopens
            settings = settings.model_copy(update={"output": None})
        try:  # format, codec, background: the sinks' own checks (existing files are for restarts)
            build_sinks(settings.model_copy(update={"overwrite": True}), plan=plan, live=True)
        except StreammatError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return config


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..service.api import Control, install
    from ..service.app import HttpServer, create_app
    from ..service.supervisor import Service

    config = check(args.config)
    if args.check:
        print(f"{args.config}: valid ({len(config.pipelines)} pipelines)", file=sys.stderr)
        return 0
    if config.log_format == "json":
        from ..service.logs import use_json_logs

        use_json_logs()
    if not args.quiet and not args.verbose:
        logging.getLogger().setLevel(logging.INFO)  # a service logs its life: starts, restarts, reloads

    stop, reload = threading.Event(), threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second signal: leave now
            os._exit(130)
        stop.set()

    def on_reload(signum: int, frame: Any) -> None:
        reload.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_reload)

    service = Service(config)
    assert config.state is not None  # filled in beside the config file when not given
    control = Control.start(
        state=config.state,
        roots=config.roots,
        max_jobs=config.max_jobs,
        token=config.token,
        host=config.host,
        service=service,
        cluster=config.cluster,
    )
    if control.token_generated:  # shown once: the operator needs it for the API and the dashboard
        print(f"streammat serve: API token (kept in {config.state}.token): {control.token}", file=sys.stderr)
    app = create_app(service)
    install(app, control)
    http = HttpServer(app, config.host, config.port)
    url = http.start()
    log.info("streammat serve: %d pipelines; %s/metrics", len(config.pipelines), url)
    service.start()
    try:
        while not stop.wait(_TICK):
            if reload.is_set():
                reload.clear()
                try:
                    changed = service.reload(check(args.config, running=service.config))
                    log.info("reloaded %s: %s", args.config, ", ".join(changed) or "nothing changed")
                except ConfigError as exc:
                    log.error("reload refused, the running config stays: %s", exc)
    finally:
        log.info("stopping: finalizing recordings")
        control.close()  # running jobs become interrupted, with their partial outputs
        service.stop()
        http.stop()
    return 0
