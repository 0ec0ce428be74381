"""Outputs never replace inputs or earlier outputs by accident, and bad sink arguments are
one-line errors raised before anything is written."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from test_sinks import info_for, run, synthetic

from streammat.errors import ConfigError, OutputError
from streammat.readback import probe, read_rgba
from streammat.sinks import NullSink, PngSequenceSink, VideoSink, create_sink
from streammat.sinks.preview import PreviewSink
from streammat.sinks.virtual_camera import VirtualCameraSink

INFO = info_for(64, 48)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


def write_file(path: Path, text: str = "precious") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_sequence(folder: Path, frames: int = 3) -> Path:
    run(create_sink(folder), synthetic(64, 48, list(range(frames))), INFO)
    return folder


# Each case: (setup(tmp) -> kwargs for create_sink, the exception, what the message says).
# The message must be one line that names the output as given; nothing may be written.
def _same_path(t: Path) -> dict:
    inp = write_file(t / "a.mp4")
    return {"output": t / "a.mp4", "inputs": [inp], "overwrite": True, "background": "green"}


def _hard_link(t: Path) -> dict:
    inp = write_file(t / "a.mp4")
    os.link(inp, t / "b.mov")
    return {"output": str(t / "b.mov"), "inputs": [str(inp)], "overwrite": True}


def _symlink(t: Path) -> dict:
    inp = write_file(t / "d.mov")
    (t / "e.mov").symlink_to(inp)
    return {"output": str(t / "e.mov"), "inputs": [str(inp)], "overwrite": True, "matte": True}


def _relative_spelling(t: Path) -> dict:
    inp = write_file(t / "sub" / "a.mkv")
    return {"output": str(t / "sub" / ".." / "sub" / "a.mkv"), "inputs": [str(inp)], "overwrite": True}


def _existing(t: Path) -> dict:
    write_file(t / "e.mov")
    return {"output": str(t / "e.mov")}


def _existing_composite(t: Path) -> dict:
    write_file(t / "c.mp4")
    return {"output": str(t / "c.mp4"), "background": "green"}


def _input_in_png_folder(t: Path) -> dict:
    make_sequence(t / "frames")
    return {"output": str(t / "frames") + "/", "inputs": [str(t / "frames" / "000001.png")], "overwrite": True}


def _input_is_png_folder(t: Path) -> dict:
    make_sequence(t / "frames")
    return {"output": str(t / "frames"), "inputs": [str(t / "frames")], "overwrite": True}


def _input_matches_pattern(t: Path) -> dict:
    write_file(t / "img_0003.png")
    return {"output": str(t / "img_%04d.png"), "inputs": [str(t / "img_0003.png")], "overwrite": True}


def _folder_with_other_files(t: Path) -> dict:
    make_sequence(t / "frames")
    write_file(t / "frames" / "notes.txt")
    return {"output": str(t / "frames"), "overwrite": True}


def _folder_with_sequence(t: Path) -> dict:
    make_sequence(t / "frames")
    return {"output": str(t / "frames")}


def _pattern_with_sequence(t: Path) -> dict:
    run(create_sink(t / "f_%03d.png"), synthetic(64, 48, [0, 1]), INFO)
    return {"output": str(t / "f_%03d.png")}


REFUSALS: list[tuple[str, Callable[[Path], dict], type, str]] = [
    ("output is the input", _same_path, OutputError, "it is the input"),
    ("hard link of the input", _hard_link, OutputError, "it is the input"),
    ("symlink to the input", _symlink, OutputError, "it is the input"),
    ("input spelled otherwise", _relative_spelling, OutputError, "it is the input"),
    ("existing file", _existing, OutputError, "exists; use -y/--overwrite to replace it"),
    ("existing composite", _existing_composite, OutputError, "exists; use -y/--overwrite"),
    ("input inside the PNG folder", _input_in_png_folder, OutputError, "holds the input"),
    ("input is the PNG folder", _input_is_png_folder, OutputError, "holds the input"),
    ("input matches the pattern", _input_matches_pattern, OutputError, "holds the input"),
    ("folder with other files", _folder_with_other_files, OutputError, "not a PNG sequence (notes.txt)"),
    ("folder with a sequence", _folder_with_sequence, OutputError, "already holds a PNG sequence; use -y"),
    ("pattern with a sequence", _pattern_with_sequence, OutputError, "already holds a PNG sequence; use -y"),
]


@pytest.mark.parametrize(("setup", "exc", "says"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_refused_outputs(tmp_path: Path, setup, exc: type, says: str):
    kwargs = setup(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    output = kwargs.pop("output")
    with pytest.raises(exc) as err:
        create_sink(output, **kwargs)
    message = str(err.value)
    assert says in message and os.fspath(output) in message and "\n" not in message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not hidden(tmp_path)


def test_refused_again_at_open(tmp_path: Path):
    """What appears between construction and open() (e.g. another run's output) is
    refused by open(), which leaves nothing behind either."""
    sink = create_sink(tmp_path / "late.mov")
    write_file(tmp_path / "late.mov")
    with pytest.raises(OutputError, match="exists; use -y/--overwrite"):
        sink.open(INFO)
    assert listing(tmp_path) == ["late.mov"] and (tmp_path / "late.mov").read_text() == "precious"


def test_overwrite_replaces_an_existing_file(tmp_path: Path):
    write_file(tmp_path / "e.mov")
    run(create_sink(tmp_path / "e.mov", overwrite=True), synthetic(64, 48, [0, 1, 2]), INFO)
    assert probe(tmp_path / "e.mov")["frames"] == 3 and listing(tmp_path) == ["e.mov"]


def test_png_overwrite_replaces_the_whole_sequence(tmp_path: Path):
    """A shorter second run leaves only its own frames, and a sidecar that lists them."""
    frames = make_sequence(tmp_path / "frames", frames=12)
    run(create_sink(frames, overwrite=True), synthetic(64, 48, [100, 200, 300, 400]), INFO)
    assert listing(frames) == ["000000.png", "000001.png", "000002.png", "000003.png", "timestamps.json"]
    assert [f.pts for f in read_rgba(frames)] == [100, 200, 300, 400]
    run(create_sink(tmp_path / "p_%02d.png"), synthetic(64, 48, [0, 1, 2]), INFO)
    write_file(tmp_path / "notes.txt")
    run(create_sink(tmp_path / "p_%02d.png", overwrite=True), synthetic(64, 48, [7]), INFO)
    assert sorted(p.name for p in tmp_path.glob("p*")) == ["p.timestamps.json", "p_00.png"]
    assert (tmp_path / "notes.txt").read_text() == "precious"  # a pattern shares its folder


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"output": 5}, "output must be a file or folder name (str or os.PathLike), got 5"),
        ({"output": None}, "output must be a file or folder name"),
        ({"output": ["a.mov"]}, "output must be a file or folder name"),
        ({"output": "a.mov", "threads": 0}, "threads must be an int >= 1, got 0"),
        ({"output": "a.mov", "threads": "2"}, "threads must be an int >= 1, got '2'"),
        ({"output": "a.mov", "threads": True}, "threads must be an int >= 1, got True"),
        ({"output": "a.mov", "matte": "yes"}, "matte must be True or False, got 'yes'"),
        ({"output": "a.mov", "overwrite": 1}, "overwrite must be True or False, got 1"),
        ({"output": "a.mov", "format": "avi"}, "format must be one of prores, vp9, ffv1, png, h264, null"),
        ({"output": "a.mov", "inputs": 3}, "inputs must be a list of file names or URLs, got 3"),
        ({"output": "a.mov", "codec": "nope"}, "codec 'nope' is not an encoder this FFmpeg build has"),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path: Path, monkeypatch, kwargs: dict, says: str):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        create_sink(**kwargs)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("output", "kwargs", "says"),
    [
        (
            "x.mov",
            {"codec": "libx264"},
            "cannot write {out}: libx264 cannot keep alpha; alpha encoders for .mov: prores_ks, prores (prores_aw)",
        ),
        ("x.webm", {"codec": "prores_ks"}, "cannot write {out}: prores_ks cannot go into .webm files"),
        ("x.mp4", {}, ".mp4 (H.264) cannot hold alpha"),
        ("x.avi", {}, "cannot tell the output format of {out}"),
        ("missing/frames/", {}, "cannot write {out}: folder {tmp}/missing does not exist"),
        ("missing/x_%03d.png", {}, "cannot write {out}: folder {tmp}/missing does not exist"),
    ],
)
def test_outputs_that_cannot_hold_it(tmp_path: Path, output: str, kwargs: dict, says: str):
    out = str(tmp_path / output) if "/" in output or output.endswith(".avi") else str(tmp_path / output)
    with pytest.raises(OutputError) as err:
        create_sink(out, **kwargs)
    assert says.format(out=out, tmp=tmp_path) in str(err.value) and "\n" not in str(err.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "fmt", "container"),
    [("x.d", "prores", "mov"), ("x.txt", "vp9", "matroska,webm"), ("noext", "ffv1", "matroska,webm")],
)
def test_the_format_picks_the_container_of_other_names(tmp_path: Path, name: str, fmt: str, container: str):
    out = tmp_path / name
    run(create_sink(out, format=fmt), synthetic(64, 48, [0, 1, 2]), INFO)
    with av.open(str(out)) as c:
        assert c.format.name.startswith(container.split(",")[0]) and c.streams.video[0].frames in (0, 3)
    assert len(list(read_rgba(out))) == 3


@pytest.mark.parametrize("name", ["100%done.mov", "take%d.mov", "a%05d.webm"])
def test_percent_in_a_video_name_is_a_video(tmp_path: Path, name: str):
    sink = create_sink(str(tmp_path / name))
    assert isinstance(sink, VideoSink)
    run(sink, synthetic(64, 48, [0, 1, 2]), INFO)
    assert listing(tmp_path) == [name] and probe(tmp_path / name)["frames"] == 3


def test_paths_are_accepted_everywhere(tmp_path: Path):
    run(create_sink(tmp_path / "p.mov"), synthetic(64, 48, [0]), INFO)
    run(create_sink(tmp_path / "seq", inputs=[tmp_path / "p.mov"]), synthetic(64, 48, [0]), INFO)
    run(PngSequenceSink(tmp_path / "i_%02d.png"), synthetic(64, 48, [0]), INFO)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.timestamps.json", "i_00.png", "p.mov", "seq"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_named_as_given(tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OutputError) as err:
        create_sink(f"{ro}/").open(INFO)
    assert str(err.value).startswith(f"cannot write {ro}/: permission denied") and f"{ro}/x" not in str(err.value)


# --------------------------------------------------------------------------- one writer
def test_two_sinks_on_one_output_in_one_process(tmp_path: Path):
    out = tmp_path / "o.mkv"
    first, early = create_sink(out), create_sink(out)
    first.open(INFO)
    with pytest.raises(OutputError, match="another streammat process"):
        create_sink(out)
    with pytest.raises(OutputError, match="another streammat process"):
        early.open(INFO)
    first.write(synthetic(64, 48, [0, 1])[0])
    first.close()
    assert listing(tmp_path) == ["o.mkv"] and probe(out)["frames"] == 2  # the lock file is gone
    seq_a = create_sink(tmp_path / "s")
    seq_a.open(INFO)
    with pytest.raises(OutputError, match="another streammat process"):
        create_sink(tmp_path / "s/")
    seq_a.close()


_HOLDER = """
import sys
from fractions import Fraction
from streammat.frames import StreamInfo
from streammat.sinks import create_sink
sink = create_sink(sys.argv[1])
sink.open(StreamInfo(64, 48, Fraction(1, 1000)))
print("open", flush=True)
sys.stdin.readline()
sink.close()
"""


def test_two_processes_on_one_output(tmp_path: Path):
    out = tmp_path / "o.webm"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(OutputError, match=f"cannot write {out}: another streammat process"):
            create_sink(out).open(INFO)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    run(create_sink(out), synthetic(64, 48, [0, 1]), INFO)  # free again: nothing was kept by the holder
    assert probe(out)["frames"] == 2 and not hidden(tmp_path)


# --------------------------------------------------------------------------- stale temporaries
def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_temporaries_are_recovered_or_removed(tmp_path: Path, caplog):
    caplog.set_level(logging.WARNING)
    pid = dead_pid()
    run(create_sink(tmp_path / "old.mov"), synthetic(64, 48, [0, 1, 2]), INFO)
    (tmp_path / "old.mov").rename(tmp_path / f".out.tmp-{pid}.mov")  # playable
    write_file(tmp_path / f".junk.tmp-{pid}.mkv", "not a video")  # unplayable
    make_sequence(tmp_path / "seqsrc", frames=2)
    (tmp_path / "seqsrc" / "timestamps.json").unlink()
    (tmp_path / "seqsrc" / "000002.png").write_bytes(b"\x89PNG\r\n")  # cut short
    (tmp_path / "seqsrc").rename(tmp_path / f".frames.tmp-{pid}")

    for name in ("out.mov", "junk.mkv", "frames"):
        run(create_sink(tmp_path / name), synthetic(64, 48, [0]), INFO)
    assert listing(tmp_path) == sorted(
        ["frames", "frames/000000.png", "frames/timestamps.json", "frames.partial", "frames.partial/000000.png"]
        + ["frames.partial/000001.png", "junk.mkv", "out.mov", "out.partial.mov"]
    )
    assert probe(tmp_path / "out.partial.mov")["frames"] == 3
    assert len(list(read_rgba(tmp_path / "frames.partial"))) == 2
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note:")]
    assert len(notes) == 3 and all(str(pid) in n for n in notes)
    assert any("removed" in n and f".junk.tmp-{pid}.mkv" in n for n in notes)


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path):
    write_file(tmp_path / f".out.tmp-{os.getppid()}.mov", "someone's")
    run(create_sink(tmp_path / "out.mov"), synthetic(64, 48, [0]), INFO)
    assert (tmp_path / f".out.tmp-{os.getppid()}.mov").read_text() == "someone's"


# --------------------------------------------------------------------------- lifecycle
SINKS: dict[str, Callable[[Path], object]] = {
    "null": lambda t: NullSink(),
    "video": lambda t: create_sink(t / "v.mkv"),
    "png": lambda t: create_sink(t / "frames"),
    "preview": lambda t: PreviewSink(show=lambda bgr: -1),
}


@pytest.mark.parametrize("kind", list(SINKS))
def test_a_sink_writes_one_stream(tmp_path: Path, kind: str):
    sink = SINKS[kind](tmp_path)
    batch = synthetic(64, 48, [0, 1])[0]
    with pytest.raises(OutputError, match="not open"):
        sink.write(batch)
    sink.open(INFO)
    with pytest.raises(OutputError, match="the sink is closed; a sink writes one stream, create a new one"):
        sink.open(INFO)
    sink.write(batch)
    sink.close()
    sink.close(complete=False)  # idempotent
    for again in (lambda: sink.write(batch), lambda: sink.open(INFO)):
        with pytest.raises(OutputError) as err:
            again()
        assert str(err.value).endswith(": the sink is closed; a sink writes one stream, create a new one")
    assert not hidden(tmp_path)


def test_virtual_camera_follows_the_same_rules():
    sink = VirtualCameraSink()
    try:
        sink.open(INFO)
    except OutputError:
        pass  # no pyvirtualcam or no loopback device here: the failed open closes the sink
    sink.close()
    with pytest.raises(OutputError, match="the sink is closed"):
        sink.write(synthetic(64, 48, [0])[0])
    with pytest.raises(OutputError, match="the sink is closed"):
        sink.open(INFO)


def test_sinks_are_context_managers(tmp_path: Path):
    batches = synthetic(64, 48, [0, 1, 2, 3, 4, 5])
    with create_sink(tmp_path / "ok.webm") as sink:
        sink.open(INFO)
        for b in batches:
            sink.write(b)
    assert probe(tmp_path / "ok.webm")["frames"] == 6
    with pytest.raises(RuntimeError), create_sink(tmp_path / "bad.webm") as sink:
        sink.open(INFO)
        sink.write(batches[0])
        raise RuntimeError("stop")
    assert probe(tmp_path / "bad.partial.webm")["frames"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.partial.webm", "ok.webm"]


def test_close_has_a_deadline(tmp_path: Path, monkeypatch):
    """A flush that hangs does not hang close(): it gives up, keeps what plays, says so."""
    import threading

    from streammat.sinks import video

    release = threading.Event()
    finalize = VideoSink._finalize

    def stuck(self, complete):
        release.wait(30)  # an encoder flush that does not return
        finalize(self, complete)

    monkeypatch.setattr(video, "CLOSE_DEADLINE", 0.5)
    monkeypatch.setattr(VideoSink, "_finalize", stuck)
    sink = create_sink(tmp_path / "slow.mov")
    sink.open(info_for(64, 48, rate=25))
    for b in synthetic(64, 48, [40 * i for i in range(60)], batch=8):  # 2.4 s: fragments on disk
        sink.write(b)
    with pytest.raises(OutputError) as err:
        sink.close()
    release.set()
    message = str(err.value)
    assert message.startswith(f"cannot finish {tmp_path / 'slow.mov'}: finishing") and "within 0.5 s" in message
    assert f"kept {tmp_path / 'slow.partial.mov'}" in message and "\n" not in message
    sink.close()  # idempotent, returns at once
