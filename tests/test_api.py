import importlib
import subprocess
import sys

import streammat


def test_every_public_name_imports():
    for name in streammat.__all__:
        assert getattr(streammat, name) is not None, name


def test_errors_form_one_tree():
    for name in ("InputError", "ModelError", "OutputError", "TransportError", "ConfigError", "Interrupted"):
        assert issubclass(getattr(streammat, name), streammat.StreammatError)


def test_every_cli_command_module_imports():
    from streammat.cli import _COMMANDS

    for name in _COMMANDS:
        assert hasattr(importlib.import_module(f"streammat.cli.{name}"), "add_parser")


def test_cli_help_runs_without_errors():
    out = subprocess.run([sys.executable, "-m", "streammat", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("process", "live", "models", "sample", "subscribe", "keys"):
        assert command in out.stdout


def test_library_modules_do_not_print():
    """CONVENTIONS §10: only the CLI prints."""
    import pathlib

    root = pathlib.Path(streammat.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "cli" not in p.parts and "testing" not in p.parts and "print(" in p.read_text()
    ]
    assert offenders == []


def test_import_is_light_and_a_subscriber_needs_no_torch():
    """``import streammat`` and ``streammat.subscribe`` load neither torch, OpenCV nor PyAV."""
    code = (
        "import sys, streammat; streammat.subscribe; streammat.ConfigError; "
        "print(sorted(m for m in ('torch', 'cv2', 'av', 'rembg', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_facade_mattes_a_file_in_one_call(tiny_home, clip, tmp_path):
    from streammat.readback import read_rgba

    src = clip("in.mp4", frames=5, width=48, height=32)
    result = streammat.process(src, tmp_path / "out.mkv", model="u2netp", batch_size=2)
    assert result.complete and result.frames_out == 5
    frames = list(read_rgba(tmp_path / "out.mkv"))
    assert len(frames) == 5
