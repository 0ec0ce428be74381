import io

from streammat.cli._progress import ProgressBar
from streammat.pipeline import Progress


def test_render_with_a_known_total_shows_count_percent_fps_and_eta():
    line = ProgressBar.render(Progress(frames=150, total=300, elapsed=5.0))
    assert "150/300" in line and "50%" in line and "30.0 fps" in line and "ETA 0:05" in line


def test_render_live_shows_latency_and_drops():
    line = ProgressBar.render(Progress(frames=90, total=None, elapsed=3.0, dropped=4, latency=0.025))
    assert "90 frames" in line and "latency 25 ms" in line and "dropped 4" in line


def test_not_a_terminal_prints_nothing():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar(Progress(frames=1, total=2, elapsed=0.1))
    bar.finish()
    assert out.getvalue() == ""


def test_terminal_redraws_one_line_and_ends_it():
    out = io.StringIO()
    bar = ProgressBar(out, enabled=True, hz=1000)
    bar(Progress(frames=1, total=2, elapsed=0.1))
    bar(Progress(frames=2, total=2, elapsed=0.2))
    bar.finish()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "2/2" in text
