"""The matte-control options, the same for ``process`` and ``live`` (only their defaults differ)."""

from __future__ import annotations

import argparse

__all__ = ["add_matte_arguments", "MATTE_OPTIONS"]

#: argument → setting (``config.MattingSettings``)
MATTE_OPTIONS = {
    "smoothing": "smoothing",
    "threshold": "threshold",
    "feather": "feather",
    "every": "every",
    "motion": "motion",
    "refine": "refine",
}


def add_matte_arguments(group: argparse._ActionsContainer, *, smoothing_default: str) -> None:
    group.add_argument(
        "--smoothing",
        type=float,
        help=f"weight of the previous matte where nothing moves, 0..<1 (default {smoothing_default})",
    )
    group.add_argument("--threshold", type=float, help="binarize the mask at this level (0..1)")
    group.add_argument("--feather", type=int, metavar="PX", help="soften mask edges by PX pixels (default 0)")
    group.add_argument("--every", type=int, metavar="N", help="compute the mask every N frames, reuse it between")
    group.add_argument(
        "--motion",
        type=float,
        metavar="LEVELS",
        help="smoothing follows pixels that changed by this many grey levels (default 12)",
    )
    group.add_argument("--refine", help="edge refinement at full resolution: none (default) or guided")
