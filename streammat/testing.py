"""Test helpers that ship with streammat, for its own tests and for users' tests.

- ``tiny_u2net_model()``: a few-KB ONNX model with rembg's u2net signature
  (input ``(N,3,320,320)``, seven outputs ``(N,1,320,320)``) whose mask is a smooth,
  deterministic function of the image (brightness of a blurred copy), so masks differ
  from frame to frame and comparisons are meaningful.
- ``install_model(home, name, model)``: places a model where rembg's own
  ``new_session(name)`` finds it (``<home>/models/<name>/<name>.onnx``), no network.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["tiny_u2net_model", "install_model", "model_path", "make_clip", "ListSource", "CollectingSink"]


def tiny_u2net_model(size: int = 320, outputs: int = 7, *, dynamic_batch: bool = True, opset: int = 17):
    """An ONNX ``ModelProto`` with the u2net family's signature.

    mask = sigmoid(conv3x3(x) * 4): a weighted channel sum with a smoothing kernel, so
    the result depends on position and colour but stays cheap."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    batch: str | int = "N" if dynamic_batch else 1
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, size, size])
    k = np.full((1, 3, 3, 3), 1.0 / 27.0, dtype=np.float32)
    k[0, 0] *= 1.5  # red weighs more than blue: masks depend on colour, not just brightness
    k[0, 2] *= 0.5
    nodes = [
        helper.make_node("Conv", ["input.1", "k"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["out0"]),
    ]
    outs = [helper.make_tensor_value_info("out0", TensorProto.FLOAT, [batch, 1, size, size])]
    for i in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["out0"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, [batch, 1, size, size]))
    graph = helper.make_graph(
        nodes,
        "tiny_u2net",
        [x],
        outs,
        initializer=[numpy_helper.from_array(k, "k"), numpy_helper.from_array(np.array(4.0, np.float32), "gain")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def model_path(home: str | Path, name: str) -> Path:
    """Where rembg looks for model ``name`` under model home ``home``."""
    return Path(home) / "models" / name / f"{name}.onnx"


def install_model(home: str | Path, name: str, model) -> Path:
    """Write ``model`` (an ONNX ModelProto or bytes) where rembg finds ``name``."""
    path = model_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model if isinstance(model, bytes | bytearray) else model.SerializeToString()
    path.write_bytes(data)
    return path


def make_clip(
    path: str | Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 12,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    rate: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    rotation: int | None = None,
) -> Path:
    """Encode a small synthetic clip with PyAV: a moving bright disc over a gradient.

    ``pts``/``time_base`` give explicit (e.g. variable-rate) timestamps; ``audio`` names
    an audio codec (``"aac"``, ``"libopus"``, ``"mp3"``…) for a 440 Hz tone track that
    covers the video's duration; ``rotation`` writes display-rotation metadata."""
    import av

    path = Path(path)
    tb = time_base or Fraction(1, rate)
    stamps = pts if pts is not None else list(range(frames))
    if len(stamps) != frames:
        raise ValueError(f"expected {frames} pts, got {len(stamps)}")
    if pix_fmt is None:
        pix_fmt = "yuv444p" if (width % 2 or height % 2) and codec == "libx264" else "yuv420p"
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        vs.time_base = tb
        vs.codec_context.time_base = tb
        if rotation is not None:
            vs.set_display_rotation(rotation)
        a_stream = None
        if audio:
            a_stream = out.add_stream(audio, rate=48000, layout="stereo")
        for i, p in enumerate(stamps):
            cx, cy = (i * 5) % width, height // 2
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (min(width, height) // 4) ** 2
            img = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), np.full_like(xx, 80)], -1)
            img[disc] = (250, 250, 250)
            vf = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            vf.pts, vf.time_base = p, tb
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if a_stream is not None:
            _write_tone(a_stream, out, seconds=float((stamps[-1] + 1) * tb))
    return path


def _write_tone(stream, out, *, seconds: float, rate: int = 48000) -> None:
    import av

    frame_size = stream.codec_context.frame_size or 1024
    total = int(seconds * rate)
    pts = 0
    while pts < total:
        t = (pts + np.arange(frame_size)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format.name
        data = np.stack([tone, tone]) if fmt.endswith("p") else np.stack([tone, tone], -1).reshape(1, -1)
        if fmt.startswith("s16"):
            data = (data * 32767).astype(np.int16)
        elif fmt.startswith("s32"):
            data = (data * 2147483647).astype(np.int32)
        af = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        af.sample_rate, af.pts, af.time_base = rate, pts, Fraction(1, rate)
        pts += frame_size
        for pkt in stream.encode(af):
            out.mux(pkt)
    for pkt in stream.encode():
        out.mux(pkt)


# -- live cameras (issue 6) --------------------------------------------------------------
# ``SyntheticCapture`` is a ``cv2.VideoCapture`` look-alike that delivers numbered frames in
# real time; ``SyntheticCamera`` is an opener for ``CameraSource(opener=...)`` that can
# stall, freeze or disappear once and come back after some failed reopens.

_CAP_PROP_WIDTH, _CAP_PROP_HEIGHT, _CAP_PROP_FPS = 3, 4, 5


def synthetic_frame(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """BGR ``(H,W,3)`` uint8: a gradient, a bright block that moves with ``index``, and
    ``index`` written in the first three pixels of row 0 (grey levels, see ``frame_number``)."""
    y = np.arange(height, dtype=np.uint16)[:, None]
    x = np.arange(width, dtype=np.uint16)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    img[..., 2] = 40
    bw, bh = max(width // 4, 1), max(height // 2, 1)
    x0 = (index * 2) % max(width - bw, 1)
    img[height // 4 : height // 4 + bh, x0 : x0 + bw] = 230
    for k in range(3):
        if k < width:
            img[0, k] = (index >> (8 * k)) & 255
    return img


def frame_number(image) -> int:
    """The index ``synthetic_frame`` wrote into ``image`` (RGB or BGR, numpy or torch)."""
    px = np.asarray(image[0, :3, 0]).astype(np.int64)
    return int(px[0] | (px[1] << 8) | (px[2] << 16))


class SyntheticCapture:
    """A ``cv2.VideoCapture`` look-alike: ``read()`` waits for the next frame of a
    ``fps`` clock, like a camera.

    ``fault`` happens after ``fault_after`` frames: ``"unplug"`` (``read()`` returns
    ``(False, None)``), ``"block"`` (``read()`` blocks until ``release()``/``unblock`` or
    ``block_for`` seconds, then fails), ``"repeat"`` (the identical last frame forever)."""

    def __init__(
        self,
        width: int = 64,
        height: int = 48,
        fps: float = 30.0,
        *,
        counter: list[int] | None = None,
        fault: str | None = None,
        fault_after: int = 0,
        block_for: float = 10.0,
        unblock=None,
        opened: bool = True,
    ) -> None:
        import threading
        import time

        if fault not in (None, "unplug", "block", "repeat"):
            raise ValueError(f"unknown fault {fault!r}")
        self.width, self.height, self.fps = width, height, float(fps)
        self.counter = counter if counter is not None else [0]
        self.fault, self.fault_after, self.block_for = fault, fault_after, block_for
        self._released = threading.Event()
        self._unblock = unblock
        self._opened = opened
        self._t0 = time.monotonic()
        self._reads = 0
        self._last: np.ndarray | None = None
        self.delivered = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._opened and not self._released.is_set()

    def get(self, prop: int) -> float:
        props = {_CAP_PROP_WIDTH: self.width, _CAP_PROP_HEIGHT: self.height, _CAP_PROP_FPS: self.fps}
        return float(props.get(prop, 0.0))

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        self._released.set()

    def read(self) -> tuple[bool, np.ndarray | None]:
        import time

        if not self.isOpened():
            return False, None
        due = self._t0 + (self._reads + 1) / self.fps
        now = time.monotonic()
        if due > now:
            if self._released.wait(due - now):
                return False, None
        elif now - due > 1.0 / self.fps:  # the reader fell behind: a camera has moved on
            self._reads = int((now - self._t0) * self.fps) - 1
        self._reads += 1
        if self.fault is not None and self.delivered >= self.fault_after:
            if self.fault == "unplug":
                return False, None
            if self.fault == "repeat" and self._last is not None:
                return True, self._last.copy()
            if self.fault == "block":
                deadline = time.monotonic() + self.block_for
                while time.monotonic() < deadline and not self._released.is_set():
                    if self._unblock is not None and self._unblock.is_set():
                        break
                    time.sleep(0.02)
                return False, None
        index = self.counter[0]
        self.counter[0] += 1
        self.delivered += 1
        self._last = synthetic_frame(index, self.width, self.height)
        return True, self._last.copy()


class SyntheticCamera:
    """An opener for ``CameraSource(opener=...)`` simulating one camera.

    The first capture it opens has ``fault`` after ``fault_after`` frames; then the next
    ``failed_reopens`` opens fail (the camera is gone), and later opens succeed with a
    healthy capture whose frame numbers continue. ``missing=True``: no open ever succeeds."""

    def __init__(
        self,
        width: int = 64,
        height: int = 48,
        fps: float = 30.0,
        *,
        fault: str | None = None,
        fault_after: int = 30,
        failed_reopens: int = 0,
        missing: bool = False,
    ) -> None:
        import threading

        self.width, self.height, self.fps = width, height, fps
        self.fault, self.fault_after = fault, fault_after
        self.failed_reopens = failed_reopens
        self.missing = missing
        self.opens = 0  # every call
        self.failed = 0  # calls that returned a closed capture
        self.counter = [0]
        self.unblock = threading.Event()
        self.captures: list[SyntheticCapture] = []

    def __call__(self, target: int | str) -> SyntheticCapture:
        self.opens += 1
        ok = not self.missing and (self.opens == 1 or self.failed >= self.failed_reopens)
        if not ok:
            self.failed += 1
        cap = SyntheticCapture(
            self.width,
            self.height,
            self.fps,
            counter=self.counter,
            fault=self.fault if self.opens == 1 else None,
            fault_after=self.fault_after,
            unblock=self.unblock,
            opened=ok,
        )
        self.captures.append(cap)
        return cap

    def close(self) -> None:
        """Release every blocked read (call at the end of a test)."""
        self.unblock.set()
        for cap in self.captures:
            cap.release()


def camera_clip(path: str | Path, frames: int = 60, width: int = 64, height: int = 48, fps: float = 30.0) -> Path:
    """Write ``frames`` numbered ``synthetic_frame`` images as a small lossless FFV1 ``.avi``
    (frame numbers survive; or a lossy ``mp4v`` ``.mp4``) that ``CameraSource`` plays as a
    file camera."""
    import cv2

    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "FFV1"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write this video")
    try:
        for i in range(frames):
            writer.write(synthetic_frame(i, width, height))
    finally:
        writer.release()
    return path


__all__ += ["synthetic_frame", "frame_number", "SyntheticCapture", "SyntheticCamera", "camera_clip"]


# -- tiny models with the other families' signatures (batched fast-path tests) ---------


def tiny_mask_model(
    size: tuple[int, int],
    *,
    layout: str = "NCHW",
    outputs: int = 1,
    stride: int = 8,
    sigmoid: bool = True,
    gain: float = 4.0,
    bias: float = 0.0,
    dynamic_batch: bool = True,
    opset: int = 17,
):
    """An ONNX ``ModelProto`` mapping an image to a smooth one-channel mask, cheap at 1024².

    mask = [sigmoid](gain * conv_{stride×stride, stride}(x) + bias), linearly resized back
    to ``size``: a strided colour-weighted average, so a 1024² input costs a few ms.
    ``layout="NCHW"``: input ``(N,3,H,W)``, outputs ``(N,1,H,W)`` (rembg's families);
    ``layout="NHWC"``: input ``(N,H,W,3)``, output ``(N,H,W,1)`` (the selfie models)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    if h % stride or w % stride:
        raise ValueError(f"size {size} must be a multiple of stride {stride}")
    batch: str | int = "N" if dynamic_batch else 1
    k = np.empty((1, 3, stride, stride), dtype=np.float32)
    k[0, 0], k[0, 1], k[0, 2] = 1.5, 1.0, 0.5  # masks depend on colour, not just brightness
    k /= 3.0 * stride * stride
    inits = [
        numpy_helper.from_array(k, "k"),
        numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        numpy_helper.from_array(np.array(bias, np.float32), "bias"),
        numpy_helper.from_array(np.array([1, 1, stride, stride], np.float32), "scales"),
    ]
    nodes = []
    src = "input"
    if layout == "NHWC":
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, h, w, 3])
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        src = "nchw"
    else:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, h, w])
    nodes += [
        helper.make_node("Conv", [src, "k"], ["c"], strides=[stride, stride]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Add", ["g", "bias"], ["gb"]),
        helper.make_node("Resize", ["gb", "", "scales"], ["r"], mode="linear"),
    ]
    last = "r"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["r"], ["s"]))
        last = "s"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [last], ["out0"], perm=[0, 2, 3, 1]))
        out_shape = [batch, h, w, 1]
    else:
        nodes.append(helper.make_node("Identity", [last], ["out0"]))
        out_shape = [batch, 1, h, w]
    outs = [helper.make_tensor_value_info("out0", TensorProto.FLOAT, out_shape)]
    for i in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["out0"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, out_shape))
    graph = helper.make_graph(nodes, "tiny_mask", [x], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_isnet_model(*, dynamic_batch: bool = True):
    """isnet-general-use / isnet-anime signature: ``(N,3,1024,1024)`` → sigmoid masks."""
    return tiny_mask_model((1024, 1024), outputs=2, dynamic_batch=dynamic_batch)


def tiny_birefnet_model(*, dynamic_batch: bool = True):
    """BiRefNet signature: ``(N,3,1024,1024)`` → raw logits (rembg applies the sigmoid)."""
    return tiny_mask_model((1024, 1024), sigmoid=False, gain=3.0, dynamic_batch=dynamic_batch)


def tiny_bria_model(*, dynamic_batch: bool = True):
    """bria-rmbg signature: ``(N,3,1024,1024)`` → ``(N,1,1024,1024)``."""
    return tiny_mask_model((1024, 1024), dynamic_batch=dynamic_batch)


def tiny_selfie_model(*, landscape: bool = False, dynamic_batch: bool = True):
    """The selfie signature: NHWC ``(N,256,256,3)`` (landscape ``(N,144,256,3)``) RGB in
    [0,1] → ``(N,H,W,1)`` sigmoid probability."""
    size = (144, 256) if landscape else (256, 256)
    return tiny_mask_model(size, layout="NHWC", gain=8.0, bias=-3.0, dynamic_batch=dynamic_batch)


__all__ += [
    "tiny_mask_model",
    "tiny_isnet_model",
    "tiny_birefnet_model",
    "tiny_bria_model",
    "tiny_selfie_model",
]


class ListSource:
    """A source over synthetic frames: ``n`` frames of ``(h, w)`` with pts ``i * step``.

    ``delay`` sleeps before each frame (a slow camera), ``fail_at`` raises
    ``InputError`` when frame ``fail_at`` is due (a broken file)."""

    backpressure = "block"

    def __init__(
        self,
        n: int,
        *,
        h: int = 16,
        w: int = 24,
        step: int = 1,
        time_base: Fraction = Fraction(1, 25),
        delay: float = 0.0,
        fail_at: int | None = None,
        backpressure: str = "block",
    ) -> None:
        self.n, self.h, self.w, self.step, self.time_base = n, h, w, step, time_base
        self.delay, self.fail_at, self.backpressure = delay, fail_at, backpressure
        self.closed = False
        self.info = None
        self._stats = {"decoded": 0}

    def open(self):
        from .frames import StreamInfo

        self.info = StreamInfo(width=self.w, height=self.h, time_base=self.time_base, frames=self.n, name="list")
        return self.info

    def __iter__(self):
        import time

        from .errors import InputError
        from .frames import Frame

        for i in range(self.n):
            if self.closed:
                return
            if self.delay:
                time.sleep(self.delay)
            if self.fail_at is not None and i == self.fail_at:
                raise InputError(f"list: frame {i} is broken")
            img = np.full((self.h, self.w, 3), i % 256, np.uint8)
            self._stats["decoded"] += 1
            yield Frame(img, i * self.step, self.time_base, i, capture_time=time.time())

    def close(self) -> None:
        self.closed = True

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)


class CollectingSink:
    """A sink that keeps every written frame's pts, alpha and RGB in memory."""

    description = "memory"

    def __init__(self, *, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.pts: list[int] = []
        self.alpha: list[np.ndarray] = []
        self.rgb: list[np.ndarray] = []
        self.info = None
        self.closed_with: list[bool] = []

    def open(self, info) -> None:
        self.info = info

    def write(self, batch) -> None:
        import time

        from .errors import OutputError

        if self.delay:
            time.sleep(self.delay)
        for i in range(batch.valid):
            if self.fail_at is not None and len(self.pts) == self.fail_at:
                raise OutputError("memory: disk full (simulated)")
            self.pts.append(batch.batch.pts[i])
            self.alpha.append(batch.alpha[i].numpy().copy())
            self.rgb.append(batch.batch.images[i].numpy().copy())

    def close(self, *, complete: bool = True) -> None:
        self.closed_with.append(complete)
