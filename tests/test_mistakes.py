"""Every mistake gets one clear line before anything heavy starts.

Each case runs the real command in-process with the model loader replaced by a tripwire:
the expected exit code, exactly one line on stderr that names the culprit (the flag, the
key or the file), no model loaded and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streammat.cli import main
from streammat.errors import ConfigError

# name → (config file text or None, arguments after "process IN", exit code, culprit in the line)
CLI_CASES: dict[str, tuple[str | None, list[str], int, str]] = {
    "config bool as text": ("matte: 'false'\n", ["-o", "{out}/x.mkv"], 2, "matte: expected a valid boolean"),
    "config float batch": ("batch_size: 8.5\n", ["-o", "{out}/x.mkv"], 2, "batch_size: expected a valid integer"),
    "config number model": ("model: 5\n", ["-o", "{out}/x.mkv"], 2, "model: expected a valid string"),
    "config float feather": ("feather: 2.5\n", ["-o", "{out}/x.mkv"], 2, "feather: expected a valid integer"),
    "config text number": ("smoothing: abc\n", ["-o", "{out}/x.mkv"], 2, "smoothing: expected a valid number"),
    "config unknown key": ("bach_size: 4\n", ["-o", "{out}/x.mkv"], 2, "did you mean 'batch_size'"),
    "config unknown section": ("proces:\n  model: selfie\nlive: {}\n", ["-o", "{out}/x.mkv"], 2, "'proces'"),
    "config not a mapping": ("- 1\n- 2\n", ["-o", "{out}/x.mkv"], 2, "expected a mapping"),
    "config range": ("process:\n  smoothing: 1.5\n", ["-o", "{out}/x.mkv"], 2, "process.yaml: smoothing"),
    "flag int as float": (None, ["-o", "{out}/x.mkv", "--batch-size", "8.5"], 2, "--batch-size"),
    "flag batch zero": (None, ["-o", "{out}/x.mkv", "--batch-size", "0"], 2, "--batch-size"),
    "flag unknown device": (None, ["-o", "{out}/x.mkv", "--device", "banana"], 2, "--device"),
    "flag negative threads": (None, ["-o", "{out}/x.mkv", "--threads", "-3"], 2, "--threads"),
    "flag smoothing 1.5": (None, ["-o", "{out}/x.mkv", "--smoothing", "1.5"], 2, "--smoothing"),
    "flag threshold 0": (None, ["-o", "{out}/x.mkv", "--threshold", "0"], 2, "--threshold"),
    "flag negative max pixels": (None, ["-o", "{out}/x.mkv", "--max-pixels", "-1"], 2, "--max-pixels"),
    "flag unknown option": (None, ["-o", "{out}/x.mkv", "--bogus"], 2, "--bogus"),
    "nothing to write": (None, [], 2, "nothing to write"),
    "matte and background": (None, ["-o", "{out}/x.mp4", "--matte", "--background", "green"], 2, "--matte"),
    "unknown colour": (None, ["-o", "{out}/x.mp4", "--background", "no-such-colour"], 2, "no-such-colour"),
    "alpha into mp4": (None, ["-o", "{out}/x.mp4"], 1, ".mp4 (H.264) cannot hold alpha"),
    "unknown format": (None, ["-o", "{out}/x.mkv", "--format", "gif"], 2, "'gif'"),
    "output folder missing": (None, ["-o", "{out}/no/such/x.mkv"], 1, "does not exist"),
    "encoder without alpha": (None, ["-o", "{out}/x.mov", "--codec", "libx264"], 1, "libx264 cannot keep alpha"),
    "output is the input": (None, ["-o", "{src}", "--background", "green", "-y"], 1, "is the input"),
}


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model is a test failure: every mistake must be caught before it."""
    import streammat.matting.sessions as sessions

    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the mistake was reported")

    monkeypatch.setattr(sessions, "create_session", tripwire)


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_process_mistakes(name: str, clip, tmp_path: Path, capsys, no_model) -> None:
    config, args, code, culprit = CLI_CASES[name]
    src = clip("in.mp4", frames=3, width=32, height=24)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["process", str(src), *[a.format(out=out, src=src) for a in args]]
    if config is not None:
        cfg = tmp_path / "process.yaml"
        cfg.write_text(config)
        argv += ["--config", str(cfg)]
    with pytest.raises(SystemExit) if name.startswith("flag int") or name == "flag unknown option" else _no_exit():
        rc = main(argv)
        assert rc == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert culprit in lines[0], lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in captured.err
    assert list(out.iterdir()) == [], "nothing is written"


class _no_exit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_config_that_is_not_text(tmp_path: Path, clip, capsys, no_model) -> None:
    img = tmp_path / "img.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert main(["process", str(clip()), "-o", str(tmp_path / "x.mkv"), "--config", str(img)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "img.png: not a YAML text file" in err


def test_live_and_subscribe_share_the_checks(tmp_path: Path, capsys, no_model) -> None:
    assert main(["live", "--camera", "0", "--preview", "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    cfg = tmp_path / "live.yaml"
    cfg.write_text("live:\n  every: 0\n")
    assert main(["live", "--config", str(cfg), "-o", str(tmp_path / "x.mkv")]) == 2
    assert "live.yaml: every" in capsys.readouterr().err
    assert main(["subscribe", "tcp://127.0.0.1:1", "--frames", "0"]) == 2
    assert "--frames" in capsys.readouterr().err


# -- the library: each public function checks its arguments ---------------------------------
def _pipeline(*args):
    from streammat.pipeline import Pipeline

    return Pipeline(*args)


def _session(*args, **kwargs):
    from streammat.matting.sessions import create_session

    return create_session(*args, **kwargs)


def _matter(*args, **kwargs):
    from streammat.matting import create_matter

    return create_matter(*args, **kwargs)


def _remove(*args):
    from streammat.matting.reference import remove_background

    return remove_background(*args)


def _process(*args, **kwargs):
    import streammat

    return streammat.process(*args, **kwargs)


class _Session:  # looks like a rembg session
    inner_session = object()

    def predict(self, img):  # pragma: no cover - never called
        return [img]


LIBRARY_CASES = {
    "create_session(123)": (lambda: _session(123), "model must be a model name"),
    "create_session(device=banana)": (lambda: _session("selfie", device="banana"), "'banana'; choose one of auto"),
    "create_session(threads=-3)": (lambda: _session("selfie", threads=-3), "threads must be an integer >= 1"),
    "create_matter('selfie')": (lambda: _matter("selfie"), "session must be a session from create_session"),
    "create_matter(None)": (lambda: _matter(None), "session must be a session from create_session"),
    "Pipeline(str source)": (lambda: _pipeline("in.mp4", lambda b: b, []), "source must be a Source"),
    "Pipeline(session as matter)": (
        lambda: _pipeline(_list_source(), _Session(), []),
        "matter must be a Matter",
    ),
    "Pipeline(str sinks)": (lambda: _pipeline(_list_source(), lambda b: b, "out.mov"), "sinks must be a list"),
    "Pipeline(batch_size=0)": (
        lambda: _pipeline_kw(batch_size=0),
        "batch_size must be an integer >= 1",
    ),
    "remove_background(numpy)": (
        lambda: _remove(_Session(), np.zeros((1, 4, 4, 3), np.float32)),
        "images must be a float torch tensor",
    ),
    "process(123)": (lambda: _process(123, "out.mov"), "input must be a path or URL"),
    "process(batch_size='8')": (lambda: _process("in.mp4", "o.mkv", batch_size="8"), "batch_size"),
    "process(unknown option)": (lambda: _process("in.mp4", "o.mkv", bach_size=8), "did you mean 'batch_size'"),
}


def _list_source():
    from streammat.testing import ListSource

    return ListSource(1)


def _pipeline_kw(**kwargs):
    from streammat.pipeline import Pipeline

    return Pipeline(_list_source(), lambda b: b, [], **kwargs)


@pytest.mark.parametrize("name", list(LIBRARY_CASES))
def test_library_mistakes(name: str) -> None:
    call, culprit = LIBRARY_CASES[name]
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert culprit in message and "\n" not in message, message


def test_remove_background_still_takes_its_contract():
    with pytest.raises(ConfigError):
        _remove(_Session(), torch.zeros((4, 4, 3)))


@pytest.mark.parametrize("command", ["process", "live", "subscribe", "sample", "serve", "jobs", "keys", "models"])
def test_help_texts_read_as_plain_text(command: str, capsys) -> None:
    """No doubled %% from argparse escapes and no reStructuredText backticks in any help."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "%%" not in text and "``" not in text, text


def test_sample_options_are_explained(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = capsys.readouterr().out
    for option, words in (("--seconds", "length"), ("--width", "width"), ("--height", "height"), ("--fps", "per")):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(option))
        assert words in line, line
