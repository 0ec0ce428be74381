"""JSON log lines for the service (``log_format: json``): one object per line, for log
collectors (Loki, Elasticsearch, journald with a JSON parser)."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "use_json_logs"]


class JsonFormatter(logging.Formatter):
    """``{"time": ISO-8601 UTC, "level", "logger", "message"[, "error"]}``."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def use_json_logs() -> None:
    """Switch the root logger's handlers to JSON lines on stderr (keeping the level)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
