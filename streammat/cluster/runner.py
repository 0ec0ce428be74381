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
    chunk_hook: Callable[[str, int, Any], None] | None = None,
) -> ClusterResult:
    """Matte ``inputs`` into ``outdir/<name>.<ext>`` on the Ray cluster at ``cluster.address``.

    ``chunk_hook(path, chunk_index, actor)`` runs at the start of every chunk task, with
    the handle of the model actor the chunk uses (fault injection in tests)."""
    import ray

    fmt = check_cluster_format(settings)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    started = connect(cluster.address)
    t0 = time.perf_counter()
    result = ClusterResult()
    try:
        run = _Run(settings, cluster, out, fmt, chunk_hook)
        plans: dict[Any, FileOutcome] = {}
        for path in inputs:
            outcome = FileOutcome(str(path), str(output_for(path, out, fmt)))
            result.files.append(outcome)
            outcome.error = _output_problem(Path(path), Path(outcome.output), settings.overwrite)
            if outcome.error is None:
                plans[run.plan(outcome.input)] = outcome
        joins: dict[Any, FileOutcome] = {}
        pending = list(plans)
        while pending:  # each file's chunks start as soon as its own plan is ready
            done, pending = ray.wait(pending, num_returns=1)
            outcome = plans[done[0]]
            try:
                plan = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - reported per file
                outcome.error = _reason(exc)
                continue
            outcome.frames, outcome.chunks = plan.frames, len(plan.chunks)
            joins[run.chunks_and_join(plan, outcome.output)] = outcome
        for ref, outcome in joins.items():
            try:
                ray.get(ref)
                outcome.ok = True
            except Exception as exc:  # noqa: BLE001 - reported per file
                outcome.error = _reason(exc)
                shutil.rmtree(_segments(out, outcome.output), ignore_errors=True)
        run.close()
    finally:
        _remove_empty(out / SEGMENTS_DIR)
        if started:
            ray.shutdown()
    result.elapsed = time.perf_counter() - t0
    for f in result.failed:
        log.error("%s: %s", f.input, f.error)
    return result


class _Run:
    """The remote functions and model actors of one ``run_cluster`` call."""

    def __init__(
        self,
        settings: ProcessConfig,
        cluster: ClusterSettings,
        out: Path,
        fmt: str,
        hook: Callable[[str, int, Any], None] | None,
    ) -> None:
        import ray
        from ray.exceptions import RayError

        from .plan import plan_video
        from .tasks import MatterActor, encode_chunk

        self.settings, self.cluster, self.out, self.fmt, self.hook = settings, cluster, out, fmt, hook
        gpus = cluster.num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        actor = ray.remote(MatterActor).options(
            num_cpus=cluster.actor_cpus,
            num_gpus=gpus,
            max_restarts=cluster.retries,
            max_task_retries=cluster.retries,
        )
        self.actors = [actor.remote(settings) for _ in range(cluster.actors)]
        self._turn = 0
        # a bad input fails the same way every time: only other errors are worth a retry
        retry = {"max_retries": cluster.retries, "retry_exceptions": [OSError, RuntimeError, OutputError, RayError]}
        self._plan = ray.remote(plan_video).options(num_cpus=cluster.task_cpus, **retry)
        self._chunk = ray.remote(encode_chunk).options(num_cpus=cluster.task_cpus, **retry)
        self._join = ray.remote(_join).options(num_cpus=cluster.task_cpus, **retry)

    def plan(self, path: str) -> Any:
        # warm-up frames only matter to the smoothing's state; every-N reuse only needs its phase
        warmup = self.cluster.warmup if self.settings.smoothing else 0
        return self._plan.remote(path, chunk_frames=self.cluster.chunk_frames, warmup=warmup, every=self.settings.every)

    def chunks_and_join(self, plan: Any, output: str) -> Any:
        """Submit every chunk of ``plan`` (actors taken in turn) and the join that waits for them."""
        folder = _segments(self.out, output)
        folder.mkdir(parents=True, exist_ok=True)
        refs = []
        for chunk in plan.chunks:
            segment = str(folder / f"{chunk.index:06d}{SEGMENT_SUFFIX[self.fmt]}")
            actor = self.actors[self._turn % len(self.actors)]
            self._turn += 1
            refs.append(self._chunk.remote(plan.path, chunk, self.settings, segment, actor, self.hook))
        return self._join.remote(output, plan.path, str(folder), *refs)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def _output_problem(source: Path, target: Path, overwrite: bool) -> str | None:
    if target.resolve() == source.resolve():
        return f"{target}: the output would replace its input"
    if target.exists() and not overwrite:
        return f"{target}: exists (use -y to replace it)"
    return None


def _segments(out: Path, output: str) -> Path:
    return out / SEGMENTS_DIR / Path(output).name


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
