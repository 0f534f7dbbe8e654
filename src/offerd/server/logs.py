"""Server logs: plain lines for a terminal, or one JSON object per line for collectors."""
from __future__ import annotations

import json
import logging
import os
import time

_worker: int | None = None


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        who = record.name if _worker is None else f"worker {_worker}"
        text = f"{self.formatTime(record)} {record.levelname} {who}: {record.getMessage()}"
        return text + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "pid": os.getpid(),
               "worker": _worker, "message": record.getMessage()}
        out.update(getattr(record, "access", None) or {})  # an access log line's fields (observe.py)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in getattr(record, "fields", {}).items():  # a line's own keys (audit.py, corelog.py)
            out.setdefault(key, value)
        return json.dumps(out, ensure_ascii=False)


def json_formatter() -> logging.Formatter:
    """One JSON object per line, times in UTC."""
    formatter = _Json()
    formatter.converter = time.gmtime
    return formatter


def setup(json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    formatter = _Json() if json_lines else _Plain()
    formatter.converter = time.gmtime  # UTC, as the Z says
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def set_worker(n: int) -> None:
    """In a forked worker: its number goes on every line."""
    global _worker
    _worker = n
