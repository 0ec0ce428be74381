#!/usr/bin/env python
"""A picture of matte quality: frame, matte and composite over a checkerboard, per setting.

Mattes one frame of the ``moving`` quality clip (``streammat.quality.clips``: the
astronaut with hair-like strands over a scrolling texture, noise and H.264) with a model
and each post-processing setting of ``streammat.quality.settings`` (the smoothers run
over the frames before it, as in a stream), and writes a PNG grid to ``OUTDIR``: one row
per setting (the true alpha first), columns frame | matte | composite, cropped to the
head at full resolution, where edges show.

    python scripts/quality_report.py docs/            # selfie -> docs/quality_selfie.png
    python scripts/quality_report.py out/ --models selfie,selfie-landscape --frame 30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammat.quality.clips import make_clip  # noqa: E402
from streammat.quality.settings import SETTINGS, PostProcess  # noqa: E402

BATCH = 8
LABEL_WIDTH = 120


def checkerboard(h: int, w: int, square: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    light = ((yy // square + xx // square) % 2).astype(np.float32)
    return np.repeat((150 + 70 * light)[..., None], 3, axis=2)


def panels(frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """frame | matte | composite over a checkerboard, side by side, uint8."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    comp = a * frame.astype(np.float32) + (1 - a) * checkerboard(*alpha.shape)
    matte = np.repeat(alpha[..., None], 3, axis=2)
    return np.concatenate([frame, matte, comp.round().astype(np.uint8)], axis=1)


def mattes(model: str, frames: np.ndarray, upto: int) -> dict[str, np.ndarray]:
    """The alpha of frame ``upto`` for each setting, the stream run from frame 0."""
    from fractions import Fraction

    from streammat.frames import Batch
    from streammat.matting import create_matter
    from streammat.matting.sessions import create_session

    matter = create_matter(create_session(model, device="cpu"), device="cpu")
    raw = []
    for start in range(0, upto + 1, BATCH):
        images = torch.from_numpy(frames[start : min(start + BATCH, upto + 1)])
        n = images.shape[0]
        idx = tuple(range(start, start + n))
        extra = {"valid": n} if "valid" in Batch.__dataclass_fields__ else {}
        batch = Batch(images=images, pts=idx, time_base=Fraction(1, 30), indices=idx, **extra)
        raw.append(matter(batch).alpha[:n].clone())
    out = {}
    for setting in SETTINGS:
        post = PostProcess(setting)
        last = None
        for k, alpha in enumerate(raw):
            last = post(torch.from_numpy(frames[k * BATCH : k * BATCH + alpha.shape[0]]), alpha.clone())
        assert last is not None
        out[setting.name] = last[-1].numpy()
    return out


def grid(frame: np.ndarray, rows: dict[str, np.ndarray], box: tuple[int, int, int, int]) -> Image.Image:
    y0, y1, x0, x1 = box
    strips = []
    for name, alpha in rows.items():
        strip = Image.fromarray(panels(frame[y0:y1, x0:x1], alpha[y0:y1, x0:x1]))
        labelled = Image.new("RGB", (LABEL_WIDTH + strip.width, strip.height), "white")
        labelled.paste(strip, (LABEL_WIDTH, 0))
        ImageDraw.Draw(labelled).text((8, strip.height // 2 - 6), name, fill="black")
        strips.append(labelled)
    out = Image.new("RGB", (strips[0].width, sum(s.height for s in strips)), "white")
    y = 0
    for s in strips:
        out.paste(s, (0, y))
        y += s.height
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--models", default="selfie", help="comma-separated model names (default: selfie)")
    ap.add_argument("--frame", type=int, default=21, help="which frame of the moving clip (default: 21)")
    ap.add_argument("--crop", default="96,288,590,910", help="y0,y1,x0,x1 of the region shown (default: the head)")
    args = ap.parse_args(argv)
    clip = make_clip("moving", frames=args.frame + 1)
    box = tuple(int(v) for v in args.crop.split(","))
    args.outdir.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        rows = {"truth": clip.alpha[args.frame]}
        rows.update(mattes(model, clip.frames, args.frame))
        image = grid(clip.frames[args.frame], rows, box)  # type: ignore[arg-type]
        path = args.outdir / f"quality_{model}.png"
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
