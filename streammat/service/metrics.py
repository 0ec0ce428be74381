"""Prometheus metrics of the service (``/metrics``), every name starting with ``streammat_``.

Per pipeline (label ``pipeline``): frames in and out, drops, restarts and errors by kind
(counters over the service's life, restarts included), fps over the last seconds, queue
depths between the stages, whether it is running, and a capture → output latency
histogram. Per shared model (label ``model``): model calls and frames (their ratio is the
batch fill), the streams attached, requests waiting, and the execution provider
onnxruntime actually granted.

Counts live in the service's runners; a collector reads them at scrape time, so nothing is
counted twice and a scrape costs nothing while nobody scrapes. Only the latency histogram
is observed as frames are written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Metrics", "CONTENT_TYPE", "PREFIX"]

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

PREFIX = "streammat_"
#: capture → output latency buckets, seconds: live targets sit between 15 and 80 ms
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """The service's registry: a collector over its pipelines and models, and the latency
    histogram."""

    def __init__(self, service: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            PREFIX + "latency_seconds",
            "Capture to output latency of written frames",
            ["pipeline"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service))

    def observe_latency(self, pipeline: str, seconds: Iterable[float]) -> None:
        child = self.latency.labels(pipeline=pipeline)
        for s in seconds:
            child.observe(max(0.0, s))

    def forget(self, pipeline: str) -> None:
        """Drop a removed pipeline's histogram."""
        try:
            self.latency.remove(pipeline)
        except KeyError:
            pass

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector:
    def __init__(self, service: Any) -> None:
        self._service = service

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        p = PREFIX
        frames_in = CounterMetricFamily(p + "frames_in", "Frames the source delivered", labels=["pipeline"])
        frames_out = CounterMetricFamily(p + "frames_out", "Frames written to every output", labels=["pipeline"])
        dropped = CounterMetricFamily(p + "frames_dropped", "Frames dropped or skipped", labels=["pipeline"])
        restarts = CounterMetricFamily(p + "pipeline_restarts", "Restarts after a failure", labels=["pipeline"])
        errors = CounterMetricFamily(p + "pipeline_errors", "Failures by kind", labels=["pipeline", "kind"])
        fps = GaugeMetricFamily(p + "fps", "Frames written per second, recent", labels=["pipeline"])
        up = GaugeMetricFamily(p + "pipeline_up", "1 while the pipeline is running", labels=["pipeline"])
        state = GaugeMetricFamily(p + "pipeline_state", "1 for the pipeline's state", labels=["pipeline", "state"])
        queues = GaugeMetricFamily(p + "queue_depth", "Items waiting between stages", labels=["pipeline", "queue"])
        for s in self._service.pipelines():
            n = s.name
            frames_in.add_metric([n], s.frames_in)
            frames_out.add_metric([n], s.frames_out)
            dropped.add_metric([n], s.dropped)
            restarts.add_metric([n], s.restarts)
            for kind, count in s.errors.items():
                errors.add_metric([n, kind], count)
            fps.add_metric([n], s.fps)
            up.add_metric([n], 1.0 if s.state == "running" else 0.0)
            state.add_metric([n, s.state], 1.0)
            for queue, depth in s.queues.items():
                queues.add_metric([n, queue], depth)
        yield from (frames_in, frames_out, dropped, restarts, errors, fps, up, state, queues)

        calls = CounterMetricFamily(p + "model_calls", "Model calls of a shared model", labels=["model"])
        frames = CounterMetricFamily(p + "model_frames", "Frames through a shared model", labels=["model"])
        by_streams = CounterMetricFamily(
            p + "model_stream_calls", "Model calls by the number of streams they served", labels=["model", "streams"]
        )
        fill = GaugeMetricFamily(p + "model_batch_fill", "Mean frames per model call", labels=["model"])
        streams = GaugeMetricFamily(p + "model_streams", "Streams sharing the model", labels=["model"])
        waiting = GaugeMetricFamily(p + "model_queue_depth", "Requests waiting for a model call", labels=["model"])
        provider = GaugeMetricFamily(
            p + "model_provider", "Execution provider granted (1)", labels=["model", "provider"]
        )
        for m in self._service.pool.models():
            label = m.label
            st = m.scheduler.stats
            calls.add_metric([label], st.calls)
            frames.add_metric([label], st.frames)
            for count, n in sorted(dict(st.streams_per_call).items()):
                by_streams.add_metric([label, str(count)], n)
            fill.add_metric([label], st.mean_fill)
            streams.add_metric([label], m.scheduler.streams)
            waiting.add_metric([label], m.scheduler.waiting)
            provider.add_metric([label, m.provider], 1.0)
        yield from (calls, frames, by_streams, fill, streams, waiting, provider)
