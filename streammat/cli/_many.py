"""``streammat process A B C -o FOLDER/`` and ``--cluster ADDRESS``: many inputs, one folder.

Each input is written to ``FOLDER/<input name without extension>.<format's extension>``.
Without ``--cluster`` the files run one after another through the usual pipeline; with it
they run on Ray (``streammat.cluster``). A file that fails is reported and the others go
on; the summary lists every file, and the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Interrupted, StreammatError
from ..outputs import output_for
from ._run import run_pipeline

log = logging.getLogger(__name__)

#: the exit status when some files failed
EXIT_SOME_FAILED = 1


def output_folder(args: argparse.Namespace) -> Path:
    """``-o``, which must name a folder when several inputs or ``--cluster`` are given."""
    why = "--cluster" if args.cluster is not None else "several inputs"
    if not args.output:
        raise ConfigError(f"--output: {why} need -o FOLDER/ (each file is written there)")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {why} need a folder, got the file {args.output}")
    if out.suffix and not out.exists() and not args.output.endswith(("/", "\\")):
        raise ConfigError(f"--output: {why} need a folder, got {args.output!r} (end it with / to make one)")
    return out


def run_many(args: argparse.Namespace, settings: Callable[[argparse.Namespace], Any]) -> int:
    folder = output_folder(args)
    inputs = list(args.input)
    if args.cluster is not None:
        rows = _run_on_cluster(args, settings, inputs, folder)
    else:
        rows = _run_one_by_one(args, settings, inputs, folder)
    failed = [r for r in rows if r[2] is not None]
    for source, target, error, detail in rows:
        print(f"FAILED {source}: {_reason(source, error)}" if error else f"ok     {source} -> {target} ({detail})")
    print(f"{len(rows) - len(failed)} of {len(rows)} files done" + (f", {len(failed)} failed" if failed else ""))
    return EXIT_SOME_FAILED if failed else 0


def _reason(source: str, error: str) -> str:
    """The error without the file name the summary line already starts with."""
    return error.removeprefix(f"{source}: ")


def _run_one_by_one(
    args: argparse.Namespace, settings: Callable[[argparse.Namespace], Any], inputs: list[str], folder: Path
) -> list[tuple[str, str, str | None, str]]:
    from ..compose import build_pipeline

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for source in inputs:
        one = copy.copy(args)
        one.input = source
        one.output = str(output_for(source, folder, args.format))
        try:
            cfg = settings(one)
            result = run_pipeline(build_pipeline(cfg))
        except ConfigError:
            raise  # the same for every file
        except StreammatError as exc:
            rows.append((source, one.output, str(exc), ""))
            continue
        if result.stopped:
            raise Interrupted(f"stopped by the user during {source}")
        rows.append((source, one.output, None, f"{result.frames_out} frames in {result.elapsed:.1f} s"))
    return rows


def _run_on_cluster(
    args: argparse.Namespace, settings: Callable[[argparse.Namespace], Any], inputs: list[str], folder: Path
) -> list[tuple[str, str, str | None, str]]:
    import re

    from ..cluster import RAY_MISSING, ray_missing
    from ..config import CLUSTER_ADDRESS, ClusterSettings, merge

    if not re.match(CLUSTER_ADDRESS, args.cluster):
        raise ConfigError(f"--cluster: expected local, auto or ray://HOST:10001, got {args.cluster!r}")
    if ray_missing():
        raise ConfigError(f"--cluster {RAY_MISSING}")
    cluster = merge(ClusterSettings, args.config, {"address": args.cluster})
    base = copy.copy(args)
    base.input, base.output = None, None
    cfg = settings(base)
    from ..cluster import run_cluster

    result = run_cluster(inputs, folder, cfg, cluster)
    return [(f.input, f.output, f.error, f"{f.frames} frames, {f.chunks} chunks" if f.ok else "") for f in result.files]
