"""Session registry: one rembg session per run, created through rembg's ``new_session``.

A model is named by a rembg model name (``u2net``, ``isnet-general-use``, …), by one of
streammat's built-in names (``selfie``, ``selfie-landscape``), or by a path to a custom
ONNX file (loaded through rembg's ``u2net_custom`` session).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import is_model_path
from ..errors import ConfigError, ModelError
from .providers import check_granted, import_onnxruntime, providers_for

log = logging.getLogger(__name__)

DEFAULT_MODEL = "selfie"


def _import_rembg() -> Any:
    import_onnxruntime()  # rembg exits the process without it
    import rembg
    import rembg.sessions

    from ..models import selfie  # registers the built-in sessions with rembg

    selfie.register()
    return rembg


def known_model_names() -> list[str]:
    """Every model name ``create_session`` accepts (besides a path): rembg's and the built-in ones."""
    _import_rembg()
    import rembg.sessions

    return sorted(rembg.sessions.sessions_names_no_credentials)


def session_options(threads: int | None = None) -> Any:
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # onnxruntime's own provider-fallback chatter; we warn ourselves
    # idle intra-op workers sleep instead of spin-waiting between runs: in the pipeline the
    # spinning burns the cores decode/encode need (2 cores: 40 -> 64 frames/s to a NullSink)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def create_session(model: str = DEFAULT_MODEL, *, device: str = "auto", threads: int | None = None) -> Any:
    """Create the rembg session for ``model`` once. Raises ``ModelError`` with the known names."""
    if not isinstance(model, str | os.PathLike) or not os.fspath(model):
        raise ConfigError(
            f"create_session: model must be a model name (e.g. {DEFAULT_MODEL!r}) or a path to an .onnx file, "
            f"got {model!r}"
        )
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"create_session: threads must be an integer >= 1, got {threads!r}")
    model = os.fspath(model)
    import_onnxruntime()
    providers = providers_for(device)
    opts = session_options(threads)
    kwargs: dict[str, Any] = {"providers": providers, "sess_opts": opts}
    path = Path(os.path.expanduser(model))
    is_path = is_model_path(model)
    if is_path:
        if not path.is_file():
            raise ModelError(f"{model}: no such model file")
        name = "u2net_custom"
        kwargs["model_path"] = str(path.resolve())
    else:
        name = model
        from ..models import store

        if store.is_builtin(name):
            return _builtin_session(name, providers, opts, device=device)
        rembg = _import_rembg()
        names = known_model_names()
        if name not in names:
            raise ModelError(f"unknown model {model!r}; known models: {', '.join(names)}, or a path to an .onnx file")
        store.ensure_available(name)
    if is_path:
        rembg = _import_rembg()
    try:
        with warnings.catch_warnings(), _custom_home(path.resolve() if is_path else None):
            # rembg's and onnxruntime's provider-fallback warnings: check_granted says it better
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            session = rembg.new_session(name, **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime, pooch (download), file errors
        if not is_path:
            from ..models import store

            path = store.model_file(name)
            if not path.is_file():  # rembg's download failed
                raise ModelError(
                    f"{model}: not in {path} and rembg could not download it ({type(exc).__name__}); "
                    f"put the .onnx file there by hand, or use the built-in --model selfie"
                ) from exc
        raise ModelError(f"{model}: cannot create the session: {exc}".splitlines()[0]) from exc
    granted = list(session.inner_session.get_providers())
    check_granted(providers, granted, device=device)
    log.info("model %s on %s", model, ", ".join(granted))
    return session


def _builtin_session(name: str, providers: list[str], opts: Any, *, device: str) -> Any:
    """A built-in model's session, created without importing rembg."""
    from ..models import selfie, store

    store.ensure_available(name)
    try:
        session = selfie.create(name, providers=providers, sess_opts=opts)
    except Exception as exc:  # onnxruntime: a damaged file, a provider that failed to load
        raise ModelError(f"{name}: cannot create the session: {exc}".splitlines()[0]) from exc
    granted = list(session.inner_session.get_providers())
    check_granted(providers, granted, device=device)
    log.info("model %s on %s", name, ", ".join(granted))
    return session


@contextlib.contextmanager
def _custom_home(path: Path | None) -> Iterator[None]:
    """rembg loads custom models only from inside its model home. For a file elsewhere,
    point rembg's legacy home at the file's folder while the session is created (the
    file is only read), then restore the environment."""
    from rembg.sessions.base import BaseSession

    homes = [os.path.abspath(BaseSession.rembg_home()), os.path.abspath(BaseSession.legacy_home())]
    if path is None or any(str(path).startswith(h + os.sep) for h in homes):
        yield
        return
    old = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = str(path.parent)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = old
