"""Which encoder, pixel format and options each output kind uses.

Alpha outputs store straight RGBA. YUV outputs are tagged BT.709 and converted with that
matrix, so decoders that read the tags (ffmpeg, PyAV, browsers) convert back correctly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import ConfigError, OutputError

__all__ = ["CodecSpec", "FORMATS", "alpha_spec", "matte_spec", "composite_spec", "EXTENSIONS"]

Mode = str  # "alpha" | "matte" | "composite"


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

#: ``--format`` names → description (for help texts)
FORMATS: dict[str, str] = {
    "prores": ".mov ProRes 4444 with alpha (prores_ks; --codec prores for the faster prores_aw)",
    "vp9": ".webm VP9 with alpha (libvpx-vp9, yuva420p, lossy)",
    "ffv1": ".mkv FFV1 lossless RGBA",
    "png": "folder or %05d.png pattern of RGBA PNGs + timestamps.json",
    "h264": ".mp4 H.264 (only with --background or --matte)",
    "null": "discard frames (benchmarks)",
}

#: output extension → default format name
EXTENSIONS: dict[str, str] = {".mov": "prores", ".webm": "vp9", ".mkv": "ffv1", ".mp4": "h264", ".png": "png"}

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
