"""Save overlay PNGs of the selfie masks on scikit-image's person photos, for review.

    python scripts/selfie_overlay.py OUTDIR [--model selfie] [--image PATH ...]

For each image it writes ``<name>_<model>_overlay.png`` (mask tinted green over the image,
background dimmed) and ``<name>_<model>_mask.png``. Without ``--image`` it uses
``skimage.data.astronaut()`` and ``skimage.data.camera()``. A missing model is pulled.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def overlay(img: Image.Image, mask: Image.Image) -> Image.Image:
    rgb = np.asarray(img.convert("RGB"), np.float32)
    a = np.asarray(mask, np.float32)[..., None] / 255.0
    green = np.array([40, 220, 60], np.float32)
    person = rgb * 0.55 + green * 0.45
    out = person * a + rgb * 0.35 * (1 - a)
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def sample_images() -> dict[str, Image.Image]:
    from skimage import data

    cam = data.camera()
    return {
        "astronaut": Image.fromarray(data.astronaut()),
        "camera": Image.fromarray(np.stack([cam] * 3, -1)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--model", default="selfie", choices=["selfie", "selfie-landscape"])
    p.add_argument("--image", type=Path, action="append", help="image file (repeatable)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    import rembg

    from streammat.models import selfie

    selfie.register()
    session = rembg.new_session(args.model)
    images = {f.stem: Image.open(f) for f in args.image} if args.image else sample_images()
    args.outdir.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        mask = session.predict(img)[0]
        mask.save(args.outdir / f"{name}_{args.model}_mask.png")
        out = args.outdir / f"{name}_{args.model}_overlay.png"
        overlay(img, mask).save(out)
        print(f"{name}: {np.mean(np.asarray(mask) > 127):.1%} person -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
