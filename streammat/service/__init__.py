"""``streammat serve``: named pipelines in one long-running process.

- ``config.py``: the service file (``ServeConfig``: ``http``, ``pipelines`` of
  ``ServePipeline`` = the live settings, batching, backoff, control-API keys);
- ``scheduler.py``: one model, many streams (``ModelScheduler``, ``StreamMatter``);
- ``pool.py``: the loaded models, one per (model, device, threads, fast path);
- ``runner.py``: one pipeline kept running (restarts with backoff, counters, latest frame);
- ``supervisor.py``: the ``Service`` (start, stop, reload, add/remove/restart pipelines);
- ``metrics.py``: Prometheus metrics; ``app.py``: the FastAPI app and its uvicorn thread;
- ``logs.py``: JSON log lines.
"""
