"""Matting many files on a Ray cluster: ``run_cluster(inputs, outdir, settings, cluster)``.

Each video is split at keyframes into chunks (``plan``); model actors decode, matte and
encode the chunks into segments, or matte the frames that CPU tasks decode and encode
(``tasks``); an actor joins each video's segments by stream copy and muxes the original
audio (``join``).
Importing this package does not import Ray; ``run_cluster`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_cluster", "ClusterResult", "FileOutcome", "RAY_MISSING", "ray_missing"]

#: what a request to run on Ray says when Ray is not installed
RAY_MISSING = "needs Ray: pip install 'streammat[cluster]'"


def ray_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is None


def __getattr__(name: str) -> Any:
    if name in ("run_cluster", "ClusterResult", "FileOutcome"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
