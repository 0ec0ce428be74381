"""The built-in selfie models: pulling, the rembg sessions, masks on real photos, batching,
the store and the ``streammat models`` command."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rembg
import rembg.session_factory
import rembg.sessions
from PIL import Image

from streammat.cli import main
from streammat.errors import ModelError
from streammat.models import selfie, store

VARIANTS = ["selfie", "selfie-landscape"]

# Rectangles (x0, y0, x1, y1) in the 512x512 photos, chosen by looking at them
# (scripts/selfie_overlay.py draws the masks): unambiguously person / background.
REGIONS = {
    "astronaut": {
        "person": [(190, 80, 260, 140), (70, 300, 240, 450)],  # face; suit torso
        "background": [(0, 0, 80, 150), (310, 0, 360, 60), (400, 150, 470, 200)],  # flag; wall; shuttle
    },
    "camera": {
        "person": [(180, 90, 240, 150), (60, 220, 140, 370)],  # head; coat
        "background": [(300, 0, 500, 100), (420, 260, 510, 400)],  # sky and buildings; grass
    },
}


def _photo(name: str) -> Image.Image:
    from skimage import data

    if name == "camera":  # grayscale: stack to RGB
        return Image.fromarray(np.stack([data.camera()] * 3, axis=-1))
    return Image.fromarray(data.astronaut())


@pytest.fixture
def sessions(selfie_env: Path) -> dict[str, rembg.sessions.BaseSession]:
    selfie.register()
    return {name: rembg.new_session(name, providers=["CPUExecutionProvider"]) for name in VARIANTS}


def test_pull_stores_both_models_and_deletes_the_wheel(selfie_home: Path, tmp_path_factory) -> None:
    for name in VARIANTS:
        path = selfie_home / "models" / name / f"{name}.onnx"
        assert path.is_file() and path.stat().st_size > 100_000
    # the pull's scratch folder (see conftest.selfie_home; pytest adds a "...current" link to it)
    (scratch,) = {p.resolve() for p in tmp_path_factory.getbasetemp().glob("selfie-pull-scratch*")}
    assert list(scratch.iterdir()) == []  # the temporary wheel is gone


@pytest.mark.parametrize("image", ["astronaut", "camera"])
@pytest.mark.parametrize("name", VARIANTS)
def test_mask_separates_the_person(sessions, name: str, image: str) -> None:
    img = _photo(image)
    mask = sessions[name].predict(img)[0]
    assert mask.mode == "L" and mask.size == img.size
    m = np.asarray(mask)
    for x0, y0, x1, y1 in REGIONS[image]["person"]:
        assert (m[y0:y1, x0:x1] > 127).mean() > 0.97, (name, image, "person", (x0, y0, x1, y1))
    for x0, y0, x1, y1 in REGIONS[image]["background"]:
        assert (m[y0:y1, x0:x1] > 127).mean() < 0.03, (name, image, "background", (x0, y0, x1, y1))


@pytest.mark.parametrize(
    "name, image, size", [("selfie", "astronaut", (256, 256)), ("selfie-landscape", "camera", (256, 144))]
)
def test_matches_mediapipe_own_runtime(sessions, name: str, image: str, size: tuple[int, int]) -> None:
    """tests/data/selfie_mediapipe_masks.npz holds the masks MediaPipe 0.10.14 itself computed
    (``mediapipe.solutions.selfie_segmentation`` on these LANCZOS-resized photos, the wheel's
    own TfLite runtime and custom op), quantised to uint8. Measured before quantising: max
    difference 2.4e-5 (selfie) and 5.1e-5 (landscape)."""
    recorded = np.load(Path(__file__).parent / "data" / "selfie_mediapipe_masks.npz")[
        f"{image}_{name}".replace("-", "_")
    ]
    x = np.asarray(_photo(image).resize(size, Image.Resampling.LANCZOS), np.float32)[None] / 255
    inner = sessions[name].inner_session
    ours = inner.run(None, {inner.get_inputs()[0].name: x})[0][0, :, :, 0]
    assert np.abs(ours * 255 - recorded).max() <= 1.0


@pytest.mark.parametrize("name", VARIANTS)
def test_no_person_gives_an_empty_mask(sessions, name: str) -> None:
    """The output is a probability: no min-max normalisation stretches an empty frame."""
    rng = np.random.default_rng(0)
    for img in (
        Image.new("RGB", (320, 240), (128, 128, 128)),
        Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)),
    ):
        assert np.asarray(sessions[name].predict(img)[0]).max() < 32


@pytest.mark.parametrize("name", VARIANTS)
def test_batch_of_8_matches_8_single_calls(sessions, name: str) -> None:
    inner = sessions[name].inner_session
    h, w = selfie.SELFIE_INPUT_SIZES[name]
    inp = inner.get_inputs()[0]
    assert selfie.SELFIE_LAYOUT == "NHWC" and inp.shape == ["N", h, w, 3]
    assert inner.get_outputs()[0].shape == ["N", h, w, 1]
    rng = np.random.default_rng(5)
    frames = []
    for i in range(8):
        img = _photo("astronaut" if i % 2 else "camera").resize((w, h), Image.Resampling.LANCZOS)
        x = np.asarray(img, np.float32) / 255
        frames.append(np.clip(x[:, ::-1] if i % 3 else x + rng.normal(0, 0.05, x.shape), 0, 1))
    batch = np.stack(frames).astype(np.float32)
    together = inner.run(None, {inp.name: batch})[0]
    alone = np.concatenate([inner.run(None, {inp.name: batch[i : i + 1]})[0] for i in range(8)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    as_u8 = lambda p: (p.clip(0, 1) * 255).astype(np.uint8)  # noqa: E731
    assert np.abs(as_u8(together).astype(int) - as_u8(alone)).max() <= 1


def test_rembg_remove_works_unchanged(sessions) -> None:
    img = _photo("astronaut")
    session = rembg.new_session("selfie")
    cut = rembg.remove(img, session=session)
    assert cut.mode == "RGBA" and cut.size == img.size
    only = rembg.remove(img, session=session, only_mask=True)
    assert only.mode == "L"
    np.testing.assert_array_equal(np.asarray(only), np.asarray(session.predict(img)[0]))
    np.testing.assert_array_equal(np.asarray(cut)[..., 3], np.asarray(only))


def test_register_is_idempotent(selfie_env: Path) -> None:
    selfie.register()
    selfie.register()
    assert rembg.session_factory.sessions_class is rembg.sessions.sessions_class
    for name in VARIANTS:
        assert sum(c.name() == name for c in rembg.sessions.sessions_class) == 1
        for names in (
            rembg.sessions.sessions_names,
            rembg.sessions.sessions_names_no_credentials,
            rembg.sessions.sessions_names_downloadable,
        ):
            assert names.count(name) == 1
        assert rembg.sessions.sessions[name].name() == name


def test_download_models_returns_the_stored_path(selfie_env: Path) -> None:
    assert selfie.SelfieLandscapeSession.download_models() == str(
        selfie_env / "models" / "selfie-landscape" / "selfie-landscape.onnx"
    )


# -- the store -------------------------------------------------------------------------------
def test_missing_model_is_pulled_automatically_with_a_log_message(
    selfie_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    calls = []
    real_pull = store.pull

    def offline_pull(name, **kw):  # the same pull, fed from the session's copy instead of pip
        calls.append(name)
        return real_pull(name, tflite_dir=selfie_home / "models")

    monkeypatch.setattr(store, "pull", offline_pull)
    with caplog.at_level(logging.INFO, logger="streammat.models.store"):
        path = selfie.SelfieSession.download_models()
    assert calls == ["selfie"] and Path(path).is_file()
    assert any("pulling it now" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_no_network_is_a_one_line_error_saying_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ModelError) as err:
        store.ensure_available("selfie")
    msg = str(err.value)
    assert (
        "no connection" in msg
        and "\n" not in msg
        and "--wheel PATH" in msg
        and "--tflite DIR" in msg
        and "mediapipe==0.10.14" in msg
    )
    assert not store.model_file("selfie").exists()


def _fake_wheel(path: Path, home: Path, corrupt: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, pin in store.BUILTIN_MODELS.items():
            data = (home / "models" / name / pin.tflite).read_bytes()
            z.writestr(f"mediapipe/modules/selfie_segmentation/{pin.tflite}", data[:-1] + b"x" if corrupt else data)
    return path


def test_pull_from_a_wheel_or_a_folder(selfie_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "a"))
    paths = store.pull("selfie-landscape", wheel=_fake_wheel(tmp_path / "mp.whl", selfie_home))
    assert [p.name for p in paths] == ["selfie.onnx", "selfie-landscape.onnx"]
    expected = (selfie_home / "models" / "selfie" / "selfie.onnx").read_bytes()
    assert paths[0].read_bytes() == expected  # the conversion is deterministic
    folder = tmp_path / "tfl"
    folder.mkdir()
    for name, pin in store.BUILTIN_MODELS.items():
        shutil.copy(selfie_home / "models" / name / pin.tflite, folder)
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "b"))
    assert all(p.is_file() for p in store.pull("selfie", tflite_dir=folder))


def test_pull_rejects_files_that_do_not_match_the_pins(selfie_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    with pytest.raises(ModelError, match="sha256"):
        store.pull("selfie", wheel=_fake_wheel(tmp_path / "bad.whl", selfie_home, corrupt=True))
    with pytest.raises(ModelError, match="not a built-in model"):
        store.pull("u2net")
    assert not store.model_file("selfie").exists()


def test_list_models_and_ensure_available_for_rembg_names(selfie_env: Path, caplog) -> None:
    infos = {m.name: m for m in store.list_models()}
    for name in VARIANTS:
        assert infos[name].present and infos[name].source == "built-in"
        assert infos[name].size == infos[name].path.stat().st_size
    assert infos["u2net"].source == "rembg" and not infos["u2net"].present and infos["u2net"].size is None
    assert "u2net_custom" not in infos
    with caplog.at_level(logging.INFO, logger="streammat.models.store"):
        store.ensure_available("u2net")  # only says so; rembg downloads it itself
    assert any("rembg will try to download" in r.getMessage() for r in caplog.records)
    assert not store.model_file("u2net").exists()


# -- the command -----------------------------------------------------------------------------
def test_cli_models_lists_and_pulls(selfie_home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("REMBG_HOME", str(selfie_home))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"model home: {selfie_home}" in out
    assert any(line.split()[:2] == ["selfie", "yes"] for line in out.splitlines())
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "new"))
    assert main(["models", "pull", "selfie", "--tflite", str(selfie_home / "models")]) == 0
    assert "selfie-landscape.onnx" in capsys.readouterr().out
    assert main(["models", "pull", "selfie", "--tflite", str(tmp_path / "nowhere")]) == 1
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "env",
    [{}, {"REMBG_HOME": "/tmp/rh"}, {"XDG_DATA_HOME": "/tmp/xdg"}, {"U2NET_HOME": "/tmp/u2", "REMBG_HOME": "/tmp/rh"}],
)
def test_model_home_follows_rembgs_own_rule(env, monkeypatch):
    """The store computes rembg's model home without importing rembg; it must agree."""
    from rembg.sessions.base import BaseSession

    for key in ("REMBG_HOME", "U2NET_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert store.model_home() == Path(BaseSession.rembg_home())


def test_the_built_in_model_runs_without_importing_rembg(selfie_env, tmp_path):
    """A run on the built-in model never imports rembg (its import pulls pymatting and numba)."""
    import subprocess
    import sys

    from streammat.testing import make_clip

    clip = make_clip(tmp_path / "one.mp4", frames=2, width=64, height=48)
    code = (
        "import sys; from streammat.cli import main; "
        f"rc = main(['process', {str(clip)!r}, '-o', {str(tmp_path / 'o.mkv')!r}, '--no-progress']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rembg', 'pymatting', 'numba'))); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("controls", [[], ["--smoothing", "0.5", "--refine", "guided", "--feather", "2"]])
def test_the_default_cpu_run_imports_no_torch(selfie_env, tmp_path, controls):
    """``streammat process`` on the default model and device never imports torch (about 2 s
    of start-up on its own) nor ZeroMQ when nothing is published: ``-X importtime`` lists
    every module the run imported. The matte controls post-process with numpy and OpenCV."""
    import subprocess
    import sys

    from streammat.testing import make_clip

    clip = make_clip(tmp_path / "one.mp4", frames=3, width=64, height=48)
    out_path = tmp_path / "out.mov"
    cmd = [sys.executable, "-X", "importtime", "-m", "streammat", "process", str(clip), "-o", str(out_path)]
    out = subprocess.run([*cmd, "--no-progress", *controls], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out_path.is_file()
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in imported and "av" in imported  # the listing is real
    assert {m.split(".")[0] for m in imported} & {"torch", "zmq"} == set()
