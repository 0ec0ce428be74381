"""The model store: where models live, and how the built-in ones are obtained.

Models live in rembg's model home (``$REMBG_HOME``, ``$U2NET_HOME``, ``$XDG_DATA_HOME/rembg``
or ``~/.rembg``) at ``<home>/models/<name>/<name>.onnx``, so rembg's own sessions and
streammat's built-in ones share one place.

The built-in models (``selfie``, ``selfie-landscape``) are MediaPipe's selfie segmentation
graphs. They ship inside the pinned ``mediapipe`` wheel, which ``pull`` fetches with pip
(no install), from which it extracts only the two ``.tflite`` files, checks their sha256,
converts them to ONNX and deletes the wheel.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

__all__ = [
    "BUILTIN_MODELS",
    "MEDIAPIPE_REQUIREMENT",
    "ModelInfo",
    "model_home",
    "model_file",
    "is_builtin",
    "ensure_available",
    "pull",
    "list_models",
]

log = logging.getLogger(__name__)

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.14"
_WHEEL_DIR = "mediapipe/modules/selfie_segmentation/"


@dataclass(frozen=True)
class _Builtin:
    tflite: str  # file name inside the wheel's selfie_segmentation folder
    size: int
    sha256: str


#: built-in model name -> the TfLite file it is converted from (pinned by size and sha256)
BUILTIN_MODELS: dict[str, _Builtin] = {
    "selfie": _Builtin(
        "selfie_segmentation.tflite",
        249_505,
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
    "selfie-landscape": _Builtin(
        "selfie_segmentation_landscape.tflite",
        250_145,
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
    ),
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    present: bool
    path: Path
    size: int | None  # bytes, None when absent
    source: str  # "built-in" or "rembg"


def model_home() -> Path:
    """rembg's model home, read from the environment on every call by rembg's own rule
    (``BaseSession.rembg_home``: ``$U2NET_HOME`` wins, then ``$REMBG_HOME``, then
    ``$XDG_DATA_HOME/rembg``, then ``~/.rembg``). Computed here so that the built-in model
    needs no import of rembg; a test checks it against rembg's function."""
    if os.getenv("U2NET_HOME"):
        return Path(os.path.expanduser(os.environ["U2NET_HOME"]))
    xdg = os.getenv("XDG_DATA_HOME")
    default = os.path.join(xdg, "rembg") if xdg else os.path.join("~", ".rembg")
    return Path(os.path.expanduser(os.getenv("REMBG_HOME", default)))


def model_file(name: str) -> Path:
    """Where model ``name`` is stored: ``<home>/models/<name>/<name>.onnx``."""
    return model_home() / "models" / name / f"{name}.onnx"


def is_builtin(name: str) -> bool:
    return name in BUILTIN_MODELS


def _hint(name: str) -> str:
    return (
        f"download {MEDIAPIPE_REQUIREMENT} (manylinux x86_64 wheel) elsewhere and run "
        f"`streammat models pull {name} --wheel PATH`, or put "
        f"{' and '.join(b.tflite for b in BUILTIN_MODELS.values())} in a folder and run "
        f"`streammat models pull {name} --tflite DIR`"
    )


def ensure_available(name: str) -> None:
    """Make sure model ``name`` can be loaded: pull a missing built-in model; for rembg's
    own models only say that rembg will download a missing file."""
    path = model_file(name)
    if is_builtin(name):
        if not path.is_file():
            log.warning("model %s is not in %s yet: pulling it now (a one-time ~35 MB download)", name, path.parent)
            pull(name)
        elif _converted_by_an_older_importer(path):
            _reconvert(name)
        return
    from rembg.sessions.base import BaseSession

    if not path.is_file() and not Path(BaseSession.legacy_home(), f"{name}.onnx").is_file():
        log.info("model %s is not in %s: rembg will try to download it", name, path.parent)


def pull(name: str, *, wheel: str | Path | None = None, tflite_dir: str | Path | None = None) -> list[Path]:
    """Obtain the built-in models and store them as ONNX; returns the stored paths.

    Both variants are pulled at once (one wheel holds both). Sources, in order: ``tflite_dir``
    (a folder holding the two ``.tflite`` files), ``wheel`` (a downloaded mediapipe wheel),
    else ``pip download`` of the pinned wheel into a temporary folder deleted afterwards."""
    if not is_builtin(name):
        raise ModelError(
            f"{name!r} is not a built-in model (built-in: {', '.join(BUILTIN_MODELS)}); "
            "rembg downloads its own models on first use"
        )
    if tflite_dir is not None:
        blobs = _read_dir(Path(tflite_dir))
    elif wheel is not None:
        blobs = _read_wheel(Path(wheel))
    else:
        with tempfile.TemporaryDirectory(prefix="streammat-pull-") as tmp:
            blobs = _read_wheel(_pip_download(Path(tmp), name))
    return _store(blobs)


def _store(blobs: dict[str, bytes]) -> list[Path]:
    """Convert verified TfLite sources and store each ONNX file beside its source."""
    from .tflite_import import import_tflite

    paths = []
    for model, data in blobs.items():
        onnx_model = import_tflite(data, name=model)
        path = model_file(model)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # the verified TfLite source stays next to the ONNX file (provenance, and
            # `--tflite <home>/models` re-converts offline after an importer fix)
            _write_atomic(path.parent / BUILTIN_MODELS[model].tflite, data)
            _write_atomic(path, onnx_model.SerializeToString())
        except OSError as exc:
            raise ModelError(f"cannot write {path}: {exc.strerror}") from exc
        log.info("stored %s (%d bytes)", path, path.stat().st_size)
        paths.append(path)
    return paths


def _converted_by_an_older_importer(path: Path) -> bool:
    import onnx

    from .tflite_import import IMPORTER_VERSION, PRODUCER

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - an unreadable file is the session's error to report
        return False
    return model.producer_name == PRODUCER and model.producer_version != IMPORTER_VERSION


def _reconvert(name: str) -> None:
    """Convert the stored, verified TfLite source of ``name`` again; without that source,
    or on a failure (a read-only model home), the previous file stays, which still loads."""
    src = model_file(name).parent / BUILTIN_MODELS[name].tflite
    if not src.is_file():
        return
    log.info("model %s was converted by an older importer: converting it again from its TfLite file", name)
    try:
        _store({name: _verify(name, src.read_bytes(), str(src))})
    except (ModelError, OSError) as exc:
        log.warning("model %s: cannot convert it again (%s); using the stored file", name, exc)


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".part", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)  # NamedTemporaryFile creates 0600; models are ordinary data files
    Path(f.name).replace(path)


def _verify(model: str, data: bytes, origin: str) -> bytes:
    pin = BUILTIN_MODELS[model]
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin.sha256:
        raise ModelError(
            f"{origin}: {pin.tflite} has sha256 {digest[:16]}… ({len(data)} bytes), "
            f"expected {pin.sha256[:16]}… ({pin.size} bytes) from {MEDIAPIPE_REQUIREMENT}"
        )
    return data


def _read_dir(folder: Path) -> dict[str, bytes]:
    """The two TfLite files from ``folder`` (or from any folder below it)."""
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder")
    out = {}
    for model, pin in BUILTIN_MODELS.items():
        path = folder / pin.tflite
        if not path.is_file():
            path = next(iter(sorted(folder.rglob(pin.tflite))), path)
        try:
            out[model] = _verify(model, path.read_bytes(), str(folder))
        except OSError as exc:
            raise ModelError(f"{path}: cannot read: {exc.strerror}") from exc
    return out


def _read_wheel(wheel: Path) -> dict[str, bytes]:
    out = {}
    try:
        with zipfile.ZipFile(wheel) as z:
            for model, pin in BUILTIN_MODELS.items():
                out[model] = _verify(model, z.read(_WHEEL_DIR + pin.tflite), wheel.name)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{wheel}: not a {MEDIAPIPE_REQUIREMENT} wheel with the selfie models ({exc})") from exc
    return out


_OFFLINE_MARKS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeout",
    "ProxyError",
    "Network is unreachable",
)


def _pip_download(dest: Path, name: str) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
        "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "20",
        "-d", str(dest), MEDIAPIPE_REQUIREMENT,
    ]  # fmt: skip
    log.info("downloading %s with pip (only two small files are kept)", MEDIAPIPE_REQUIREMENT)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"cannot run pip to download {MEDIAPIPE_REQUIREMENT} ({exc}); {_hint(name)}") from exc
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        if any(m in ln for ln in lines for m in _OFFLINE_MARKS):
            why = f"no connection to the package index: {why}"
        raise ModelError(f"pip could not download {MEDIAPIPE_REQUIREMENT} ({why}); {_hint(name)}")
    return wheels[0]


def _rembg_local_names() -> list[str]:
    """rembg's single-file local models (custom-path sessions and prompt-driven SAM left out)."""
    import rembg.sessions as rs

    downloadable = set(rs.sessions_names_downloadable)
    return [
        n for n in rs.sessions_names_no_credentials
        if n in downloadable and not n.endswith("_custom") and n != "sam" and not is_builtin(n)
    ]  # fmt: skip


def list_models() -> list[ModelInfo]:
    """The built-in models, then rembg's credential-free local models, with their state."""
    from rembg.sessions.base import BaseSession

    infos = []
    for name in [*BUILTIN_MODELS, *_rembg_local_names()]:
        path = model_file(name)
        if not path.is_file() and not is_builtin(name):
            legacy = Path(BaseSession.legacy_home(), f"{name}.onnx")
            path = legacy if legacy.is_file() else path
        present = path.is_file()
        infos.append(
            ModelInfo(
                name=name,
                present=present,
                path=path,
                size=path.stat().st_size if present else None,
                source="built-in" if is_builtin(name) else "rembg",
            )
        )
    return infos
