"""Which container, encoder, pixel format and options each output kind uses.

Alpha outputs store straight RGBA. YUV outputs are tagged BT.709 and converted with that
matrix, so decoders that read the tags (ffmpeg, PyAV, browsers) convert back correctly.

``OUTPUT_FORMATS`` is the one table of ``--format`` names: the container each writes and
the file extensions that go with it. A known video extension picks its own container
(``--format vp9 -o x.mkv`` is VP9 in Matroska); any other name gets the format's container
(``--format prores -o take.d`` is a QuickTime file named ``take.d``).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field, replace

import av

from ..errors import ConfigError, OutputError

__all__ = [
    "CodecSpec",
    "OutputFormat",
    "OUTPUT_FORMATS",
    "FORMATS",
    "EXTENSIONS",
    "CONTAINERS",
    "alpha_spec",
    "matte_spec",
    "composite_spec",
    "container_for",
    "check_codec",
    "alpha_depth",
    "muxer_options",
]


@dataclass(frozen=True)
class CodecSpec:
    codec: str
    pix_fmt: str
    description: str
    options: dict[str, str] = field(default_factory=dict)
    #: None: not YUV (no matrix/range tags); else "MPEG" (limited) or "JPEG" (full)
    color_range: str | None = "MPEG"
    #: pixel format to use instead when width or height is odd (None: odd sizes are fine)
    odd_pix_fmt: str | None = None
    #: stream metadata the muxer needs (e.g. WebM ``alpha_mode``)
    metadata: dict[str, str] = field(default_factory=dict)

    def pix_fmt_for(self, width: int, height: int) -> str:
        if self.odd_pix_fmt and (width % 2 or height % 2):
            return self.odd_pix_fmt
        return self.pix_fmt


@dataclass(frozen=True)
class OutputFormat:
    """A ``--format`` name: the container it writes (None: not a video file) and the
    extensions that go with it (the first is the usual one)."""

    container: str | None
    extensions: tuple[str, ...]
    description: str


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "prores": OutputFormat(
        "mov", (".mov",), ".mov ProRes 4444 with alpha (prores_ks; --codec prores for the faster prores_aw)"
    ),
    "vp9": OutputFormat("webm", (".webm",), ".webm VP9 with alpha (libvpx-vp9, yuva420p, lossy)"),
    "ffv1": OutputFormat("matroska", (".mkv",), ".mkv FFV1 lossless RGBA"),
    "png": OutputFormat(None, (".png",), "folder or %05d.png pattern of RGBA PNGs + timestamps.json"),
    "h264": OutputFormat("mp4", (".mp4",), ".mp4 H.264 (only with --background or --matte)"),
    "null": OutputFormat(None, (), "discard frames (benchmarks)"),
}

#: ``--format`` names → description (for help texts)
FORMATS: dict[str, str] = {name: f.description for name, f in OUTPUT_FORMATS.items()}

#: output extension → default format name
EXTENSIONS: dict[str, str] = {ext: name for name, f in OUTPUT_FORMATS.items() for ext in f.extensions}

#: video extension → the container written for it
CONTAINERS: dict[str, str] = {ext: f.container for f in OUTPUT_FORMATS.values() if f.container for ext in f.extensions}

#: Seconds of video per fragment (MOV/MP4) or cluster (Matroska/WebM): what a crash, a
#: kill or a full disk can lose at most. Each piece is flushed to the file when it is
#: complete, so the file on disk plays up to the last one at every moment.
FRAGMENT_SECONDS = 1.0


def muxer_options(container: str, time_scale: int) -> dict[str, str]:
    """Muxer options that keep a file playable while it is written.

    MOV/MP4 use FFmpeg's ``hybrid_fragmented`` mode (the idea of OBS Studio's hybrid MP4):
    while writing, the file is a fragmented MOV (a small ``moov`` up front, then
    ``moof``+``mdat`` pieces) that players read up to the last complete fragment; the
    trailer turns it into a regular MOV with one ``mdat`` and a full index at the end, so
    a finished file is what editors expect (measured: ~8 % larger than a plain MOV at
    64×48, the fragment headers stay inside the ``mdat``). ProRes frames are all
    keyframes, so fragments are cut by duration. Matroska/WebM play when truncated at a
    cluster boundary; clusters are cut by time. ``flush_packets`` writes each piece to
    the file when the muxer emits it instead of keeping it in the I/O buffer."""
    if container in ("mov", "mp4"):
        return {
            "movflags": "hybrid_fragmented+delay_moov",
            "frag_duration": str(int(FRAGMENT_SECONDS * 1_000_000)),
            "video_track_timescale": str(time_scale),  # the input's time scale, not a multiple
            "flush_packets": "1",
        }
    if container in ("webm", "matroska"):
        return {"cluster_time_limit": str(int(FRAGMENT_SECONDS * 1000)), "flush_packets": "1"}
    return {}


def container_for(fmt: str, name: str) -> str:
    """The container written for format ``fmt`` into a file called ``name``."""
    for ext, container in CONTAINERS.items():
        if name.lower().endswith(ext):
            return container
    container = OUTPUT_FORMATS[fmt].container
    assert container is not None, f"{fmt} is not a video format"
    return container


@functools.cache
def _container_codecs(container: str) -> frozenset[str]:
    with av.open(io.BytesIO(), "w", format=container) as probe:
        return frozenset(probe.supported_codecs)


def _encoder(name: str) -> av.codec.Codec:
    try:
        return av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise ConfigError(f"codec {name!r} is not an encoder this FFmpeg build has; e.g. {_ALPHA_HINT}") from exc


def _alpha_formats(codec: av.codec.Codec) -> list[str]:
    return [f.name for f in codec.video_formats or () if any(c.is_alpha for c in f.components)]


#: encoders that can keep alpha, in the order they are suggested
_ALPHA_ENCODERS = ("prores_ks", "prores", "ffv1", "libvpx-vp9", "libvpx", "png", "qtrle", "libx265")
_ALPHA_HINT = "prores_ks, prores (prores_aw), ffv1, libvpx-vp9, png, qtrle"
_SHOWN = {"prores": "prores (prores_aw)"}


def alpha_encoders(container: str) -> list[str]:
    """The encoders of ``_ALPHA_ENCODERS`` this build has and ``container`` accepts."""
    supported = _container_codecs(container)
    out = []
    for name in _ALPHA_ENCODERS:
        try:
            codec = av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        if codec.canonical_name in supported and _alpha_formats(codec):
            out.append(name)
    return out


def check_codec(spec: CodecSpec, container: str, *, alpha: bool, shown: str) -> CodecSpec:
    """``spec`` with a pixel format its encoder takes, or a one-line error naming the
    encoders that fit ``container`` (``shown`` is the output as the user gave it)."""
    codec = _encoder(spec.codec)
    ext = next((e for e, c in CONTAINERS.items() if c == container), container)
    if alpha:
        formats = _alpha_formats(codec)
        if not formats:
            fits = ", ".join(_SHOWN.get(n, n) for n in alpha_encoders(container))
            raise OutputError(f"cannot write {shown}: {spec.codec} cannot keep alpha; alpha encoders for {ext}: {fits}")
        if spec.pix_fmt not in formats:
            pix = "rgba" if "rgba" in formats else formats[0]
            spec = replace(spec, pix_fmt=pix, odd_pix_fmt=None, color_range="MPEG" if pix.startswith("yuv") else None)
    if codec.canonical_name not in _container_codecs(container):
        fits = ", ".join(_SHOWN.get(n, n) for n in alpha_encoders(container)) if alpha else ""
        hint = f"; alpha encoders for {ext}: {fits}" if fits else ""
        raise OutputError(f"cannot write {shown}: {spec.codec} cannot go into {ext} files{hint}")
    return spec


def alpha_depth(pix_fmt: str) -> int:
    """Bits of the alpha plane of a planar ``yuva*`` format (as FFmpeg describes the
    format), 0 for other formats (packed RGBA keeps alpha inside its pixels)."""
    if not pix_fmt.startswith("yuva"):
        return 0
    return next((c.bits for c in av.VideoFormat(pix_fmt).components if c.is_alpha), 0)


def component_bits(pix_fmt: str) -> int:
    """Bits of the first component (luma/red) of ``pix_fmt``."""
    return av.VideoFormat(pix_fmt).components[0].bits


# lag-in-frames=0: no look-ahead queue (libvpx keeps 25 frames per encoder otherwise, and
# VP9 alpha runs two encoders): ~150 MB less at 720p and no added latency for live use.
_VP9_FAST = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "30", "b": "0", "lag-in-frames": "0"}
_X264 = {"crf": "18", "preset": "veryfast"}

PRORES_KS = CodecSpec("prores_ks", "yuva444p10le", "ProRes 4444 (prores_ks)", {"profile": "4444"})
PRORES_AW = CodecSpec("prores", "yuva444p10le", "ProRes 4444 (prores_aw)", {"profile": "4"})
VP9_ALPHA = CodecSpec("libvpx-vp9", "yuva420p", "VP9 with alpha", dict(_VP9_FAST), metadata={"alpha_mode": "1"})
# bgra: exact RGBA (FFV1 codes it losslessly with its reversible colour transform); the
# RGBA→BGRA swizzle is cheap, whereas yuva444p would round RGB through a YUV matrix.
FFV1_ALPHA = CodecSpec(
    "ffv1",
    "bgra",
    "FFV1 lossless with alpha",
    {"level": "3", "slices": "4", "slicecrc": "1"},
    color_range=None,
)

_ALPHA = {"prores": PRORES_KS, "vp9": VP9_ALPHA, "ffv1": FFV1_ALPHA}


def _with_codec(spec: CodecSpec, codec: str | None) -> CodecSpec:
    if not codec or codec == spec.codec:
        return spec
    if spec is PRORES_KS and codec in ("prores", "prores_aw"):
        return PRORES_AW
    if codec == "prores_ks" and spec.codec == "prores":
        return PRORES_KS
    return replace(spec, codec=codec, description=f"{spec.description.split(' (')[0]} ({codec})", options={})


def alpha_spec(fmt: str, codec: str | None = None) -> CodecSpec:
    if fmt == "h264":
        raise OutputError(
            ".mp4 (H.264) cannot hold alpha: write .mov (ProRes 4444), .webm (VP9), .mkv (FFV1) "
            "or a PNG folder, or give --background COLOR|IMAGE|blur or --matte for .mp4"
        )
    if fmt not in _ALPHA:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return _with_codec(_ALPHA[fmt], codec)


def matte_spec(fmt: str, codec: str | None = None) -> CodecSpec:
    """Grayscale alpha (Y = alpha, full range where the codec allows)."""
    if fmt in ("h264",):
        spec = CodecSpec("libx264", "yuv420p", "H.264 matte (full range)", dict(_X264), "JPEG", "yuv444p")
    elif fmt == "ffv1":
        spec = CodecSpec("ffv1", "gray", "FFV1 lossless matte", {"level": "3", "slices": "4"}, color_range=None)
    elif fmt == "prores":
        spec = CodecSpec("prores_ks", "yuv422p10le", "ProRes 422 HQ matte", {"profile": "3"}, "MPEG")
    elif fmt == "vp9":
        spec = CodecSpec("libvpx-vp9", "yuv420p", "VP9 matte", dict(_VP9_FAST), "JPEG")
    else:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return _with_codec(spec, codec)


def composite_spec(fmt: str, codec: str | None = None) -> CodecSpec:
    """Opaque RGB over a background: H.264 (yuv420p; yuv444p for odd sizes) or VP9 for .webm."""
    if fmt == "vp9":
        spec = CodecSpec("libvpx-vp9", "yuv420p", "VP9 composite", dict(_VP9_FAST))
    elif fmt == "ffv1":
        spec = CodecSpec("ffv1", "bgr0", "FFV1 lossless composite", {"level": "3", "slices": "4"}, color_range=None)
    elif fmt in ("h264", "prores"):
        spec = CodecSpec("libx264", "yuv420p", "H.264 composite", dict(_X264), "MPEG", "yuv444p")
    else:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return _with_codec(spec, codec)
