"""``streammat models``: list the models and where they live; ``models pull NAME`` obtains one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        help="list models; pull the built-in ones",
        description="List the models streammat can use (built-in and rembg's) and the model home.",
    )
    p.set_defaults(func=run, models_command=None)
    verbs = p.add_subparsers(dest="models_command", metavar="ACTION")
    pull = verbs.add_parser(
        "pull",
        help="obtain a built-in model (selfie, selfie-landscape) and store it as ONNX",
        description=(
            "Download the pinned mediapipe wheel with pip, extract the selfie segmentation TfLite "
            "files, verify them and convert them to ONNX in the model home. Both variants are "
            "stored at once. Offline: pass a wheel downloaded elsewhere (--wheel) or a folder "
            "holding the two .tflite files (--tflite)."
        ),
    )
    pull.add_argument("name", help="selfie or selfie-landscape")
    src = pull.add_mutually_exclusive_group()
    src.add_argument("--wheel", type=Path, metavar="PATH", help="a downloaded mediapipe-0.10.14 wheel")
    src.add_argument("--tflite", type=Path, metavar="DIR", help="a folder holding the two .tflite files")
    pull.set_defaults(func=run, models_command="pull")
    return p


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def run(args: argparse.Namespace) -> int:
    from ..models import store

    if args.models_command == "pull":
        for path in store.pull(args.name, wheel=args.wheel, tflite_dir=args.tflite):
            print(f"stored {path} ({_size(path.stat().st_size)})")
        return 0
    infos = store.list_models()
    print(f"model home: {store.model_home()}")
    rows = [("NAME", "PRESENT", "SIZE", "SOURCE", "PATH")]
    rows += [(m.name, "yes" if m.present else "no", _size(m.size), m.source, str(m.path)) for m in infos]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 0
