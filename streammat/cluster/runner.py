"""``run_cluster``: every input file through the chunked plan on Ray, with a per-file summary.

Faults: a failed chunk task is retried (``retries``), a lost model actor is restarted by
Ray and its in-flight calls retried; a file whose planning, chunks or join still fail is
reported with the reason and the other files go on.

Outputs and inputs are shared paths: every node must see the inputs and the output
folder at the same paths (one machine, or a shared file system).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ClusterSettings, ProcessConfig
from ..errors import ConfigError, OutputError, StreammatError
from ..outputs import DEFAULT_FOLDER_FORMAT, output_for
from .tasks import SEGMENT_SUFFIX

__all__ = ["run_cluster", "ClusterResult", "FileOutcome", "connect"]

log = logging.getLogger(__name__)

#: where the segments of ``OUTDIR/<name>`` wait for their join
SEGMENTS_DIR = ".streammat-segments"


@dataclass
class FileOutcome:
    input: str
    output: str
    ok: bool = False
    frames: int = 0
    chunks: int = 0
    error: str | None = None


@dataclass
class ClusterResult:
    files: list[FileOutcome] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def connect(address: str) -> bool:
    """Join or start Ray at ``address``; True when this call started it (so it shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address == "local":
        ray.init(include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    return True


def _reason(exc: BaseException) -> str:
    """The original error's one line, unwrapped from Ray's task and actor errors."""
    seen = exc
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    if isinstance(seen, StreammatError):
        return str(seen)
    text = str(seen).strip().splitlines()
    return f"{type(seen).__name__}: {text[-1] if text else ''}".strip()


def check_cluster_format(settings: ProcessConfig) -> str:
    """The output format, which must be one whose segments join by stream copy."""
    fmt = settings.format or DEFAULT_FOLDER_FORMAT
    if fmt not in SEGMENT_SUFFIX or settings.background:
        raise ConfigError(
            f"--cluster: format {fmt!r}{' with --background' if settings.background else ''} cannot be "
            f"joined from segments; use --format {' or '.join(SEGMENT_SUFFIX)} (alpha or --matte)"
        )
    return fmt


def run_cluster(
    inputs: list[str],
    outdir: str | Path,
    settings: ProcessConfig,
    cluster: ClusterSettings,
    *,
    chunk_hook: Callable[[str, int], None] | None = None,
) -> ClusterResult:
    """Matte ``inputs`` into ``outdir/<name>.<ext>`` on the Ray cluster at ``cluster.address``.

    ``chunk_hook(path, chunk_index)`` runs at the start of every chunk task (fault
    injection in tests)."""
    import ray
    from ray.exceptions import RayError

    from .plan import plan_video
    from .tasks import MatterActor, encode_chunk

    fmt = check_cluster_format(settings)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    started = connect(cluster.address)
    t0 = time.perf_counter()
    result = ClusterResult()
    try:
        gpus = cluster.num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        actor_cls = ray.remote(MatterActor).options(
            num_cpus=cluster.actor_cpus,
            num_gpus=gpus,
            max_restarts=cluster.retries,
            max_task_retries=cluster.retries,
        )
        actors = [actor_cls.remote(settings) for _ in range(cluster.actors)]
        # a bad input fails the same way every time: only other errors are worth a retry
        retry = {"max_retries": cluster.retries, "retry_exceptions": [OSError, RuntimeError, OutputError, RayError]}
        plan_task = ray.remote(plan_video).options(num_cpus=cluster.task_cpus, **retry)
        chunk_task = ray.remote(encode_chunk).options(num_cpus=cluster.task_cpus, **retry)
        join_task = ray.remote(_join).options(num_cpus=cluster.task_cpus, **retry)
        warmup = cluster.warmup if settings.smoothing else 0
        every = settings.every
        plans: dict[Any, FileOutcome] = {}
        for path in inputs:
            target = output_for(path, out, fmt)
            outcome = FileOutcome(str(path), str(target))
            result.files.append(outcome)
            if target.resolve() == Path(path).resolve():
                outcome.error = f"{target}: the output would replace its input"
                continue
            if target.exists() and not settings.overwrite:
                outcome.error = f"{target}: exists (use -y to replace it)"
                continue
            ref = plan_task.remote(str(path), chunk_frames=cluster.chunk_frames, warmup=warmup, every=every)
            plans[ref] = outcome
        joins: dict[Any, FileOutcome] = {}
        turn = 0
        pending = list(plans)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            outcome = plans[done[0]]
            try:
                plan = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - reported per file
                outcome.error = _reason(exc)
                continue
            outcome.frames, outcome.chunks = plan.frames, len(plan.chunks)
            folder = out / SEGMENTS_DIR / Path(outcome.output).name
            folder.mkdir(parents=True, exist_ok=True)
            refs = []
            for chunk in plan.chunks:
                segment = str(folder / f"{chunk.index:06d}{SEGMENT_SUFFIX[fmt]}")
                actor = actors[turn % len(actors)]
                turn += 1
                refs.append(chunk_task.remote(plan.path, chunk, settings, segment, actor, chunk_hook))
            joins[join_task.remote(outcome.output, plan.path, str(folder), *refs)] = outcome
        for ref, outcome in joins.items():
            try:
                ray.get(ref)
                outcome.ok = True
            except Exception as exc:  # noqa: BLE001 - reported per file
                outcome.error = _reason(exc)
                shutil.rmtree(out / SEGMENTS_DIR / Path(outcome.output).name, ignore_errors=True)
        for actor in actors:
            ray.kill(actor)
    finally:
        _remove_empty(out / SEGMENTS_DIR)
        if started:
            ray.shutdown()
    result.elapsed = time.perf_counter() - t0
    for f in result.failed:
        log.error("%s: %s", f.input, f.error)
    return result


def _join(output: str, source: str, folder: str, *segments: str) -> int:
    from .join import join_segments

    frames = join_segments(list(segments), output, audio_from=source)
    shutil.rmtree(folder, ignore_errors=True)
    return frames


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
