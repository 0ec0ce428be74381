"""Device-resident batches: frames go to the GPU once, and only the alpha comes back.

On CUDA, ``BatchedMatter`` keeps a batch on the device from upload to alpha: the resize and
normalisation (``batched.preprocess``), the model (a runner from ``runners.py``: onnxruntime
through IOBinding or the torch backend), the sigmoid/min–max and the upsampling to frame
size all run on device tensors; the ``(N,H,W)`` uint8 alpha is the one copy back.

``PinnedUploader`` does the upload: the decoded frames are copied into a page-locked
(pinned) staging buffer, and the host-to-device copy is queued on a side stream, so it
runs while the model still works on the previous batch; the consuming stream waits on
an event, never the host. A plain ``tensor.to("cuda")`` from pageable memory instead
blocks the calling thread until the copy is done.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

__all__ = ["PinnedUploader"]

log = logging.getLogger(__name__)


class _Slot:
    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.done: Any = None  # the CUDA event recorded after this slot's last copy


class PinnedUploader:
    """``uploader(images) -> images on device``, through pinned buffers on a side stream.

    ``slots`` staging buffers are used in turn; a buffer is reused only after its previous
    copy has finished, so up to ``slots`` uploads can be in flight. On a CPU ``device`` it
    returns its input unchanged."""

    def __init__(self, device: torch.device, *, slots: int = 3) -> None:
        self.device = device
        self._slots = [_Slot() for _ in range(slots)]
        self._next = 0
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self._stream is None:
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
