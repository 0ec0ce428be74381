"""``streammat serve CONFIG --check``: a valid file passes; each invalid one is one line
naming the file, the key path and what was expected, with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streammat.cli import main
from streammat.service.config import ServeConfig, load_serve_config

VALID = """
http: 127.0.0.1:9100
pipelines:
  cam1:
    source: /data/clip.mp4
    realtime: true
    loop: true
    model: u2netp
    publish: tcp://127.0.0.1:5601
  cam2:
    source: zmq+tcp://127.0.0.1:5700
    model: u2netp
    output: /tmp/cam2.mov
"""

CAM = "pipelines:\n  cam1: {source: '0', publish: 'tcp://127.0.0.1:5601', "  # + one more setting and "}"

# (config text, what the one line must contain)
INVALID = [
    ("pipelnes: {}\n", "unknown setting 'pipelnes' (did you mean 'pipelines'?)"),
    (
        "pipelines:\n  cam1: {source: '0', publish: 'tcp://127.0.0.1:5601', bach_size: 2}\n",
        "unknown setting 'pipelines.cam1.bach_size' (did you mean 'batch_size'?)",
    ),
    (CAM + "batch_size: 0}\n", "pipelines.cam1.batch_size"),
    (CAM + "batch_size: '8'}\n", "pipelines.cam1.batch_size"),
    (CAM + "smoothing: 1.5}\n", "pipelines.cam1.smoothing"),
    (CAM + "layout: rgbx}\n", "pipelines.cam1.layout"),
    ("pipelines:\n  cam1: {publish: 'tcp://127.0.0.1:5601'}\n", "pipelines.cam1.source: required"),
    ("pipelines:\n  cam1: {source: '0'}\n", "pipelines.cam1: nothing to write"),
    ("pipelines:\n  cam1: just-a-string\n", "pipelines.cam1: expected a mapping"),
    ("http: localhost\n", "http: expected HOST:PORT"),
    ("http: 127.0.0.1:70000\n", "http: expected HOST:PORT"),
    (
        "pipelines:\n  'cam 1': {source: '0', publish: 'tcp://127.0.0.1:5601'}\n",
        "pipelines.cam 1: expected a pipeline name of",
    ),
    (
        "pipelines:\n  a: {source: '0', publish: 'tcp://127.0.0.1:5601'}\n"
        "  b: {source: '1', publish: 'tcp://127.0.0.1:5601'}\n",
        "pipelines.b.publish: tcp://127.0.0.1:5601 is already used by pipeline 'a'",
    ),
    (CAM + "model: nosuchmodel}\n", "pipelines.cam1.model"),
    ("pipelines:\n  cam1: {source: '0', output: out.mov, format: gif}\n", "pipelines.cam1: format must be one of"),
    ("pipelines: [cam1, cam2]\n", "pipelines"),
    ("http: [1, 2\n", "invalid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("in_flight: 0\n", "in_flight"),
    ("model_nice: -1\n", "model_nice: expected greater than or equal to 0"),
    ("model_nice: '10'\n", "model_nice: expected a valid integer"),
]


def test_the_issue_example_is_valid(tmp_path: Path, tiny_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(VALID)
    assert main(["serve", str(path), "--check"]) == 0
    config = load_serve_config(path)
    cam1, cam2 = config.pipelines["cam1"], config.pipelines["cam2"]
    assert cam1.publish == ("tcp://127.0.0.1:5601",) and cam1.loop and cam1.realtime
    assert cam2.batch_size == 1 and cam2.smoothing == 0.5  # the live defaults
    assert config.host == "127.0.0.1" and config.port == 9100
    assert config.state == str(tmp_path.resolve() / "streammat-state.sqlite")
    assert config.roots == [str(tmp_path.resolve())]


@pytest.mark.parametrize("name", ["serve.yaml", "serve-zmq.yaml", "serve-gpu.yaml"])
def test_the_shipped_examples_are_valid(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[1] / "configs" / name
    assert main(["serve", str(path), "--check"]) == 0, capsys.readouterr().err
    assert load_serve_config(path).pipelines


def test_defaults_bind_loopback() -> None:
    assert ServeConfig().host == "127.0.0.1"


@pytest.mark.parametrize(("text", "expected"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_an_invalid_config_is_one_line_and_exit_2(
    text: str, expected: str, tmp_path: Path, tiny_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    assert main(["serve", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"streammat: error: {path}: "), err
    assert expected in err, err


def test_the_command_line_exits_2_on_an_invalid_config(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("pipelines:\n  cam1: {source: '0', publish: 'tcp://127.0.0.1:5601', batch_size: -1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "streammat", "serve", str(path)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"streammat: error: {path}: pipelines.cam1.batch_size: expected greater than or equal to 1, got -1"
    ]


RELATIVE = """\
state: db/jobs.sqlite
roots: [media, /srv/shared]
pipelines:
  file:
    source: media/clip.mp4
    model: models/tiny.onnx
    output: media/out/file.mkv
    background: bg.png
    source_secure: keys/client
    publish_secure: keys/server
  cam:
    source: 0
    background: green
    publish: tcp://127.0.0.1:5611
  net:
    source: zmq+tcp://127.0.0.1:5700
    model: u2netp
    output: /srv/abs.mkv
    background: blur:2
"""


def test_relative_paths_are_taken_from_the_config_folder(
    tmp_path: Path, tiny_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streammat.testing import tiny_u2net_model

    folder = tmp_path / "site"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "tiny.onnx").write_bytes(tiny_u2net_model().SerializeToString())
    (folder / "bg.png").write_bytes(b"not read by the loader")
    path = folder / "serve.yaml"
    path.write_text(RELATIVE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the service's working directory plays no part

    config = load_serve_config(Path("..") / "site" / "serve.yaml")
    site = folder.resolve()
    file, cam, net = config.pipelines["file"], config.pipelines["cam"], config.pipelines["net"]
    assert file.source == str(site / "media/clip.mp4") and file.output == str(site / "media/out/file.mkv")
    assert file.model == str(site / "models/tiny.onnx") and file.background == str(site / "bg.png")
    assert file.source_secure == str(site / "keys/client") and file.publish_secure == str(site / "keys/server")
    assert (cam.source, cam.background) == ("0", "green")  # a camera index and a colour
    assert (net.source, net.model, net.output, net.background) == (
        "zmq+tcp://127.0.0.1:5700",
        "u2netp",
        "/srv/abs.mkv",
        "blur:2",
    )
    assert config.state == str(site / "db/jobs.sqlite") and config.roots == [str(site / "media"), "/srv/shared"]

    # --check (and a SIGHUP reload, which goes through the same check) finds the model file
    # beside the config, not in the working directory
    (folder / "simple.yaml").write_text(
        "pipelines:\n  a: {source: clip.mp4, model: models/tiny.onnx, publish: 'tcp://127.0.0.1:5612'}\n"
    )
    assert main(["serve", str(folder / "simple.yaml"), "--check"]) == 0, capsys.readouterr().err
    (elsewhere / "models").mkdir()
    (folder / "models" / "tiny.onnx").replace(elsewhere / "models" / "tiny.onnx")  # only in the working directory
    assert main(["serve", str(folder / "simple.yaml"), "--check"]) == 2
    assert f"no such model file {str(site / 'models/tiny.onnx')!r}" in capsys.readouterr().err
