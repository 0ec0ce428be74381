"""``run_cluster``: every input file through the chunked plan on Ray, with a per-file summary.

Faults: a failed chunk is retried (``retries``), a lost model actor is restarted by Ray
and its in-flight calls retried; a file whose planning, chunks or join still fail is
reported with the reason and the other files go on.

Outputs and inputs are shared paths: every node must see the inputs and the output
folder at the same paths (one machine, or a shared file system).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ClusterSettings, ProcessConfig
from ..errors import ConfigError, OutputError, StreammatError
from ..outputs import DEFAULT_FOLDER_FORMAT, output_for
from .join import partial_name
from .plan import Chunk
from .tasks import FILES_GROUP, SEGMENT_SUFFIX, ChunkHook

__all__ = ["run_cluster", "ClusterResult", "FileOutcome", "connect"]

log = logging.getLogger(__name__)

#: where the segments of ``OUTDIR/<name>`` wait for their join
SEGMENTS_DIR = ".streammat-segments"
#: seconds between looks at the stop event while waiting for results
_WAIT = 0.5


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
    #: the run was stopped before every file was done
    stopped: bool = False

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
    outputs: list[str] | None = None,
    chunk_hook: ChunkHook | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    stop: threading.Event | None = None,
) -> ClusterResult:
    """Matte ``inputs`` into ``outdir/<name>.<ext>`` (or ``outputs``, one path per input)
    on the Ray cluster at ``cluster.address``.

    ``on_progress(frames_done, frames_total)`` follows every finished chunk (the total is
    None until every file is planned). Setting ``stop`` cancels what is still running: the
    files not yet joined end with an error and ``result.stopped`` is True.
    ``chunk_hook(path, chunk_index, actor)`` runs at the start of every chunk, with the
    handle of the model actor the chunk uses (fault injection in tests)."""
    import ray

    fmt = check_cluster_format(settings)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    started = connect(cluster.address)
    t0 = time.perf_counter()
    result = ClusterResult()
    run = None
    try:
        run = _Run(settings, cluster, fmt, chunk_hook)
        waiting: dict[Any, tuple[str, FileOutcome, int]] = {}  # ref -> (plan|chunk|join, file, frames)
        targets = outputs if outputs is not None else [str(output_for(path, out, fmt)) for path in inputs]
        for path, target in zip(inputs, targets, strict=True):
            outcome = FileOutcome(str(path), str(target))
            result.files.append(outcome)
            outcome.error = _output_problem(Path(path), Path(outcome.output), settings.overwrite)
            if outcome.error is None:
                waiting[run.plan(outcome.input)] = ("plan", outcome, 0)
        done_frames, total, planning = 0, 0, len(waiting)  # planning: plans not yet back
        while waiting:  # each file's chunks start as soon as its own plan is ready
            if stop is not None and stop.is_set():
                result.stopped = True
                _mark_stopped(waiting, done_frames)
                break
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=_WAIT, fetch_local=False)
            for ref in done:
                kind, outcome, frames = waiting.pop(ref)
                planning -= kind == "plan"
                try:
                    value = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - reported per file (a chunk's error, by its join)
                    if kind != "chunk":
                        outcome.error = _reason(exc)
                        shutil.rmtree(_segments(outcome.output), ignore_errors=True)
                    continue
                if kind == "plan":
                    outcome.frames, outcome.chunks = value.frames, len(value.chunks)
                    total += value.frames
                    chunks, join = run.chunks_and_join(value, outcome.output)
                    waiting.update({r: ("chunk", outcome, c.frames) for r, c in chunks})
                    waiting[join] = ("join", outcome, 0)
                elif kind == "chunk":
                    done_frames += frames
                    if on_progress is not None:
                        on_progress(done_frames, None if planning else total)
                else:
                    outcome.ok = True
    finally:
        if run is not None:
            run.close()
        for f in result.files:
            if result.stopped and not f.ok:  # a join the stop cut short leaves its temporary file
                shutil.rmtree(_segments(f.output), ignore_errors=True)
                partial_name(Path(f.output)).unlink(missing_ok=True)
        for folder in {_segments(f.output).parent for f in result.files}:
            _remove_empty(folder)
        if started:
            ray.shutdown()
    result.elapsed = time.perf_counter() - t0
    # the callers report failures (the command's summary, the job's record): a debug line here
    for f in result.failed:
        log.debug("%s: %s", f.input, f.error)
    return result


def _mark_stopped(waiting: dict[Any, tuple[str, FileOutcome, int]], frames: int) -> None:
    """The files still waiting end as stopped; their plans, chunks and joins end when the
    run's actors are killed."""
    for _, outcome, _ in waiting.values():
        if not outcome.ok:
            outcome.error = f"stopped after {frames} frames of the run"


class _Run:
    """The remote functions and model actors of one ``run_cluster`` call."""

    def __init__(self, settings: ProcessConfig, cluster: ClusterSettings, fmt: str, hook: ChunkHook | None) -> None:
        import ray
        from ray.exceptions import RayError

        from .tasks import MatterActor, encode_chunk

        self.settings, self.cluster, self.fmt, self.hook = settings, cluster, fmt, hook
        resources = ray.cluster_resources()
        gpus = cluster.num_gpus
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) > 0 else 0.0
        self.fused = cluster.fused if cluster.fused is not None else resources.get("GPU", 0) == 0
        count = cluster.actors
        if count is None:  # as many as the GPUs hold, or the CPUs when fused actors run on CPUs
            count = 1
            if gpus > 0:
                count = max(1, int(resources.get("GPU", 0) // gpus))
            elif self.fused:
                count = max(1, int(resources.get("CPU", 0) // cluster.task_cpus))
        # a bad input fails the same way every time: only other errors are worth a retry
        retry_on = [OSError, RuntimeError, OutputError, RayError]
        # a fused actor does a chunk task's work and reserves its CPUs; its threads fit them
        cpus = cluster.task_cpus if self.fused else cluster.actor_cpus
        cores = max(1, round(cluster.task_cpus)) if self.fused else None
        # chunks run one at a time; plans and joins in a thread of their own, each at once
        actor = ray.remote(concurrency_groups={FILES_GROUP: 1})(MatterActor).options(
            allow_out_of_order_execution=True,
            num_cpus=cpus,
            num_gpus=gpus,
            max_restarts=cluster.retries,
            max_task_retries=cluster.retries,
            scheduling_strategy="SPREAD",
        )
        self.actors = [actor.remote(settings, cores) for _ in range(count)]
        self._turn = 0
        self._on_actor = {"retry_exceptions": retry_on}
        retry = {"max_retries": cluster.retries, "retry_exceptions": retry_on}
        self._chunk = ray.remote(encode_chunk).options(num_cpus=cluster.task_cpus, **retry)

    def plan(self, path: str) -> Any:
        # warm-up frames only matter to the smoothing's state; every-N reuse only needs its phase
        warmup = self.cluster.warmup if self.settings.smoothing else 0
        return self._files("plan").remote(path, self.cluster.chunk_frames, warmup, self.settings.every)

    def chunks_and_join(self, plan: Any, output: str) -> tuple[list[tuple[Any, Chunk]], Any]:
        """Submit every chunk of ``plan`` (actors taken in turn) and the join that waits for them."""
        folder = _segments(output)
        folder.mkdir(parents=True, exist_ok=True)
        refs = []
        for chunk in plan.chunks:
            segment = str(folder / f"{chunk.index:06d}{SEGMENT_SUFFIX[self.fmt]}")
            actor = self.actors[self._turn % len(self.actors)]
            self._turn += 1
            if self.fused:
                ref = actor.run_chunk.options(**self._on_actor).remote(plan.path, chunk, segment, self.hook)
            else:
                ref = self._chunk.remote(plan.path, chunk, self.settings, segment, actor, self.hook)
            refs.append((ref, chunk))
        return refs, self._files("join").remote(output, plan.path, str(folder), *(r for r, _ in refs))

    def _files(self, method: str) -> Any:
        """``method`` of the next actor, called in its thread for plans and joins."""
        actor = self.actors[self._turn % len(self.actors)]
        self._turn += 1
        return getattr(actor, method).options(concurrency_group=FILES_GROUP, **self._on_actor)

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


def _segments(output: str) -> Path:
    return Path(output).parent / SEGMENTS_DIR / Path(output).name


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
