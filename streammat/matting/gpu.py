"""Device-resident batches: frames go to the GPU once, and only the alpha (or composite)
comes back.

``DeviceResident`` wraps a matting stage whose model runs on CUDA (the bare
``BatchedMatter`` or its matte controls, ``TemporalMatter``): its ``prepare`` uploads the
batch's frames once and hands the inner matter a batch that lives on the device. Every
later step runs where the frames are: the resize and normalisation
(``batched.preprocess``), the model (a runner from ``runners.py``: onnxruntime through
IOBinding or the torch backend), the sigmoid/min–max, the upsampling to frame size, the
edge refinement, the smoothing, the threshold and the feather (``feather.py``), and the
composite over ``--background`` when the output is one (``sinks.compositing``). Its
``finish`` then copies the ``(N,H,W)`` uint8 alpha back, and the ``(N,H,W,3)`` composite
when there is one: the only device-to-host copies of a batch. A matter that is not
wrapped (the service's shared models) still runs its model on the device and brings the
alpha back at the end of its own ``finish``.

``PinnedUploader`` does the upload: the decoded frames are copied into a page-locked
(pinned) staging buffer, and the host-to-device copy is queued on a side stream, so it
runs while the model still works on the previous batch; the consuming stream waits on
an event, never the host. A plain ``tensor.to("cuda")`` from pageable memory instead
blocks the calling thread until the copy is done.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..frames import Batch, MattedBatch
from .base import StagedMatter, model_choice

__all__ = ["PinnedUploader", "DeviceResident", "matter_device", "on_device", "device_copies"]

#: the kinds of copy the torch profiler names (its CUDA events "Memcpy HtoD (...)" and so on)
COPY_KINDS = ("HtoD", "DtoH", "DtoD")

log = logging.getLogger(__name__)


class _Slot:
    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.done: Any = None  # the CUDA event recorded after this slot's last copy


class PinnedUploader:
    """``uploader(images) -> images on device``, through pinned buffers on a side stream.

    ``slots`` staging buffers are used in turn; a buffer is reused only after its previous
    copy has finished, so up to ``slots`` uploads can be in flight. On a CPU ``device``, or
    for images already on a device, it returns its input unchanged."""

    def __init__(self, device: torch.device, *, slots: int = 3) -> None:
        self.device = device
        self._slots = [_Slot() for _ in range(slots)]
        self._next = 0
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self._stream is None or images.device.type != "cpu":
            return images
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.done is not None:
            slot.done.synchronize()  # its previous copy must have left the buffer
        n = images.numel()
        if slot.buffer is None or slot.buffer.numel() < n or slot.buffer.dtype != images.dtype:
            slot.buffer = torch.empty(n, dtype=images.dtype, pin_memory=True)
        staged = slot.buffer[:n].view(images.shape)
        staged.copy_(images)
        consumer = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            out = torch.empty(images.shape, dtype=images.dtype, device=self.device)
            out.copy_(staged, non_blocking=True)
            slot.done = torch.cuda.Event()
            slot.done.record(self._stream)
        consumer.wait_event(slot.done)
        out.record_stream(consumer)  # allocated on the side stream, used and freed on the consumer's
        return out


def matter_device(matter: Any) -> torch.device:
    """The torch device a matting stage's model runs on (``base.model_choice``)."""
    choice = model_choice(matter)
    return torch.device(choice.device if choice is not None else "cpu")


def on_device(matter: Any, *, background: Any = None) -> Any:
    """``matter`` kept on its CUDA device from upload to alpha (``DeviceResident``),
    compositing over ``background`` (a ``sinks.compositing.Background``) there when one
    is given; ``matter`` unchanged when its model runs on the CPU."""
    device = matter_device(matter)
    if device.type != "cuda" or isinstance(matter, DeviceResident):
        return matter
    compositor = None
    if background is not None:
        from ..sinks.compositing import Compositor

        compositor = Compositor(background)
    log.debug("batches stay on %s until the alpha%s", device, " and the composite" if compositor else "")
    return DeviceResident(matter, device, compositor=compositor)


@dataclasses.dataclass
class _OnDevice:
    """A batch between the steps: its frames on the device, and the inner matter's work."""

    batch: Batch
    work: Any = None


class DeviceResident:
    """A staged matter whose batches stay on ``device`` through every step of ``inner``.

    ``compositor`` (a ``sinks.compositing.Compositor``): composite on the device too, and
    return ``CompositedBatch`` es. The matted batches returned hold the host batch and
    host tensors, as those of any other matter."""

    def __init__(self, inner: Any, device: torch.device, *, compositor: Any = None) -> None:
        self.inner = inner
        self.device = device
        self.compositor = compositor
        self._staged = isinstance(inner, StagedMatter)
        self._upload = PinnedUploader(device)

    def prepare(self, batch: Batch) -> _OnDevice:
        on = dataclasses.replace(batch, images=self._upload(batch.images), alphas=None)
        return _OnDevice(on, self.inner.prepare(on) if self._staged else None)

    def infer(self, step: _OnDevice) -> _OnDevice:
        step.work = self.inner.infer(step.work) if self._staged else self.inner(step.batch)
        return step

    def finish_on_device(self, step: _OnDevice) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The post-processing, all on the device: the alpha ``(N,H,W)`` and the composite
        ``(N,H,W,3)`` (None without a compositor), both uint8 device tensors."""
        matted = self.inner.finish(step.batch, step.work) if self._staged else step.work
        if self.compositor is None:
            return matted.alpha, None
        return matted.alpha, self.compositor.apply_torch(step.batch.images, matted.alpha)

    def finish(self, batch: Batch, step: _OnDevice) -> MattedBatch:
        alpha, made = self.finish_on_device(step)
        alpha = alpha.to("cpu")  # the batch's device-to-host copies: the alpha ...
        if made is None:
            return MattedBatch(batch, alpha)
        from ..sinks.compositing import CompositedBatch

        return CompositedBatch(batch, alpha, made.to("cpu"), self.compositor.background)  # ... and the composite

    def __call__(self, batch: Batch) -> MattedBatch:
        return self.finish(batch, self.infer(self.prepare(batch)))


def device_copies(fn: Callable[[], Any], *, trace: Path | None = None) -> tuple[Any, dict[str, int]]:
    """``fn()`` under the torch profiler: its value and how many copies of each kind
    (``COPY_KINDS``) between host and device the profiler saw, the GPU synchronised
    before it stops. ``trace``: write the Chrome trace there too. Without CUDA the
    profiler sees the host only and every count is 0."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        value = fn()
        if cuda:
            torch.cuda.synchronize()
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    names = [event.name for event in prof.events()]
    return value, {kind: sum(name.startswith(f"Memcpy {kind}") for name in names) for kind in COPY_KINDS}
