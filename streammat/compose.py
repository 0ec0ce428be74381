"""The composition root: settings → session → matter → sinks → ``Pipeline``, in one place.

Every command (``process``, ``live``, ``subscribe``), the library façade
(``streammat.process``) and the service build their pipelines here, in the same order:

1. the settings are already validated (``config.py``);
2. the sinks are constructed — cheap checks of every output (format, codec, existing
   files, output == input) before anything heavy;
3. the source is opened — a missing file, camera or publisher fails here, and a ZeroMQ
   source starts receiving before the model loads;
4. the session and the matter are created (the model loads);
5. the ``Pipeline`` ties them together.

What fails on the way closes what was already opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import PipelineSettings
from .errors import ConfigError, OutputError

__all__ = [
    "process",
    "build_pipeline",
    "build_model",
    "build_matter",
    "with_matte_controls",
    "build_sinks",
    "build_source",
    "PassThrough",
    "is_live_source",
]

log = logging.getLogger(__name__)

#: the ProRes 4444 encoder of live recordings: prores_aw, 3.5x faster than prores_ks here
LIVE_PRORES = "prores"


def is_live_source(settings: PipelineSettings) -> bool:
    """A camera (index, /dev/videoN) or a file/URL read in real time: newest frame first."""
    from .sources import zmq_url

    spec = settings.source
    if zmq_url(spec) is not None:
        return False
    return settings.realtime or spec.isdigit() or spec.startswith("/dev/video")


def build_source(settings: PipelineSettings, *, plan: Any, keep_alpha: bool = False) -> Any:
    """The (not yet opened) source for ``settings.source``."""
    from .sources import open_source, zmq_url

    if not settings.source:
        raise ConfigError("no input: give a video file, image sequence, camera or zmq+tcp://HOST:PORT")
    if zmq_url(settings.source) is not None:
        from .transport.security import ClientSecurity

        options: dict[str, Any] = {
            "topic": settings.source_topic,
            "timeout": settings.source_timeout,
            "backpressure": "latest" if settings.source_latest else "block",
            "security": ClientSecurity.from_dir(settings.source_secure) if settings.source_secure else None,
            "reliable": settings.source_reliable,
        }
        if keep_alpha:
            options["keep_alpha"] = True
        return open_source(settings.source, **options)
    if is_live_source(settings):
        from .sources.camera import CameraSource

        return CameraSource(
            settings.source,
            width=settings.width,
            height=settings.height,
            fps=settings.fps,
            watchdog=settings.watchdog,
            reconnect=settings.reconnect,
            loop=settings.loop,
            max_frames=settings.frames,
            max_seconds=settings.duration,
            max_pixels=settings.max_pixels,
        )
    options = {"threads": plan.decode_threads, "max_pixels": settings.max_pixels}
    if settings.source_timeout is not None and "://" in settings.source:
        options["timeout"] = settings.source_timeout  # a network input's open and read timeout
    return open_source(settings.source, **options)


def build_sinks(
    settings: PipelineSettings,
    *,
    plan: Any,
    on_quit: Callable[[], None] | None = None,
    live: bool = False,
) -> list[Any]:
    """The sinks the settings ask for, constructed (not opened) and checked."""
    sinks: list[Any] = []
    others = bool(settings.output or settings.publish or settings.virtual_camera is not None)
    if settings.preview:
        from .sinks.preview import PreviewSink, preview_unavailable

        reason = preview_unavailable()
        if reason is None:
            sinks.append(PreviewSink(f"streammat: {settings.source}", background=settings.background, on_quit=on_quit))
        elif others:
            log.warning("no preview: %s", reason)
        else:
            raise OutputError(f"--preview: {reason}")
    if settings.output:
        from .sinks import create_sink

        background, codec = settings.background, settings.codec
        suffix = Path(settings.output).suffix.lower()
        if live and background and suffix != ".mp4":
            background = None  # live: the background is for the preview / virtual camera
        if live and codec is None and suffix == ".mov" and settings.format in (None, "prores"):
            codec = LIVE_PRORES  # keeps up with a camera where prores_ks (10 frames/s at 720p) cannot
        sink = create_sink(
            settings.output,
            format=settings.format,
            matte=settings.matte,
            background=background,
            codec=codec,
            threads=plan.encode_threads,
            overwrite=settings.overwrite,
            inputs=_inputs(settings),
        )
        if live:  # a recorder that falls behind drops its own frames, never the stream's
            from .sinks.decoupled import DecoupledSink

            sink = DecoupledSink(sink)
        sinks.append(sink)
    sinks.extend(_publishers(settings))
    if settings.virtual_camera is not None:
        import importlib.util

        from .sinks.virtual_camera import INSTALL_HINT, VirtualCameraSink

        if importlib.util.find_spec("pyvirtualcam") is None:
            raise OutputError(INSTALL_HINT)
        sinks.append(
            VirtualCameraSink(
                background=settings.background or "blur", device=settings.virtual_camera or None, fps=settings.fps
            )
        )
    return sinks


def _inputs(settings: PipelineSettings) -> tuple[str, ...]:
    """The local files an output must never overwrite (not URLs, streams or stdin)."""
    from .sources import zmq_url

    spec = settings.source
    if not spec or spec == "-" or "://" in spec or zmq_url(spec) is not None or spec.isdigit():
        return ()
    return (spec,)


def _publishers(settings: PipelineSettings) -> list[Any]:
    if not settings.publish:
        return []
    from .sinks.publisher import PublisherSink
    from .transport.security import ServerSecurity

    security = ServerSecurity.from_dir(settings.publish_secure) if settings.publish_secure else None
    extra: dict[str, Any] = {} if settings.publish_hwm is None else {"sndhwm": settings.publish_hwm}
    return [
        PublisherSink(
            url,
            topic=settings.topic,
            layout=settings.layout,
            compression=None if settings.compress == "none" else settings.compress,
            security=security,
            wait_subscribers=settings.publish_wait,
            reliable=settings.publish_reliable,
            **extra,
        )
        for url in settings.publish
    ]


def build_model(settings: Any, *, plan: Any, session: Any = None) -> tuple[Any, Any]:
    """``(session, matter)`` for ``settings`` (a ``MattingSettings``): the session, created
    once unless one is given, and its bare matter, without matte controls."""
    from .matting import create_matter

    if session is None:
        from .matting.sessions import create_session

        session = create_session(settings.model, device=settings.device, threads=settings.threads or plan.onnx_intra_op)
    return session, create_matter(session, fast=settings.fast, device=settings.device, backend=settings.backend)


def build_matter(settings: Any, *, plan: Any, session: Any = None, background: Any = None) -> Any:
    """The matting stage for ``settings``: the model's matter inside its matte controls,
    kept on the GPU from upload to alpha when the model runs there (compositing over
    ``background``, a ``Background``, there too when given)."""
    from .matting.base import model_choice

    matter = with_matte_controls(build_model(settings, plan=plan, session=session)[1], settings)
    choice = model_choice(matter)
    if choice is None or not choice.on_cuda:
        return matter  # the CPU path stays free of torch
    from .matting.gpu import on_device

    return on_device(matter, background=background)


def with_matte_controls(matter: Any, settings: Any) -> Any:
    """``matter`` wrapped in the matte controls of ``settings`` (refinement, smoothing,
    threshold, feather, every-N; unchanged when they are off). The service wraps each
    stream's view of a shared model."""
    if not settings.temporal:
        return matter
    from .matting.temporal import TemporalMatter

    return TemporalMatter(
        matter,
        smoothing=settings.smoothing,
        threshold=settings.threshold,
        feather=settings.feather,
        every=settings.every,
        motion=settings.motion,
        refine=settings.refine,
    )


class PassThrough:
    """The matter of a recorder: frames that arrived with a matte keep it (255 without one)."""

    def __call__(self, batch: Any) -> Any:
        import numpy as np

        from .frames import MattedBatch

        alpha = batch.alphas_array
        if alpha is None:
            alpha = np.full((len(batch), batch.height, batch.width), 255, np.uint8)
        return MattedBatch(batch, alpha)


def build_pipeline(
    settings: PipelineSettings,
    *,
    matter: Any = None,
    session: Any = None,
    on_progress: Callable[[Any], None] | None = None,
    keep_alpha: bool = False,
    require_output: bool = True,
) -> Any:
    """A ready-to-run ``Pipeline`` for ``settings`` (see the module docstring for the order).

    ``matter`` replaces the matting stage (e.g. ``PassThrough()`` for recorders); ``session``
    reuses a loaded model."""
    from .matting.threads import plan_threads
    from .pipeline import Pipeline

    plan = plan_threads()
    plan.apply()
    live = is_live_source(settings)
    box: list[Any] = []
    sinks = build_sinks(settings, plan=plan, on_quit=lambda: box[0].stop() if box else None, live=live)
    if require_output and not sinks:
        raise ConfigError("nothing to write: give -o OUTPUT, --publish URL, --preview or --virtual-camera")
    source = build_source(settings, plan=plan, keep_alpha=keep_alpha)
    try:
        source.open()  # fail fast on a bad input, before the model loads
        if matter is None:
            from .sinks.compositing import composite_background

            matter = build_matter(settings, plan=plan, session=session, background=composite_background(sinks))
    except BaseException:
        source.close()
        raise
    pipeline = Pipeline(
        source,
        matter,
        sinks,
        batch_size=settings.batch_size,
        queue_depth=settings.queue_depth,
        flush_after=settings.flush_after if settings.batch_size > 1 and live else None,
        on_progress=on_progress,
        stop_is_end=live,
        max_frames=None if live else settings.frames,
    )
    box.append(pipeline)
    return pipeline


def process(input: str | Path, output: str | Path | None = None, **options: Any) -> Any:
    """Matte ``input`` into ``output`` in one call; returns the ``RunResult``.

    ``options`` are the settings of ``streammat process`` (``model=``, ``device=``,
    ``batch_size=``, ``matte=``, ``background=``, ``overwrite=``, ``publish=[...]`` …; see
    ``config.PipelineSettings``), checked before anything heavy starts::

        streammat.process("in.mp4", "out.mov", model="selfie", batch_size=8)
    """
    import os

    from .config import ProcessConfig, settings_from

    for name, value in (("input", input), ("output", output)):
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ConfigError(f"process: {name} must be a path or URL (str or os.PathLike), got {type(value).__name__}")
    values = {"source": os.fspath(input), **options}
    if output is not None:
        values["output"] = os.fspath(output)
    settings = settings_from(ProcessConfig, values, where="process")
    return build_pipeline(settings).run()
