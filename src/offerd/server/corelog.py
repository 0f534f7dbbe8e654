"""gRPC core's own log lines, re-emitted through Python's logging (logger "grpc.core") so
they take the server's format, plain or JSON, like every other line.

gRPC's C++ core logs with Abseil straight to file descriptor 2 (GRPC_VERBOSITY and
GRPC_TRACE say how much); grpcio offers no hook into Python's logging. So, in each serving
process and before gRPC is loaded, `capture()` makes fd 2 a pipe read by a thread, which
parses each Abseil line ("W1205 07:40:20.669861    6620 log.cc:110] text") into a record
of that level; other lines come through whole, as warnings. Python's own stderr (sys.stderr
and the log handlers writing to it) moves to a duplicate of the original fd 2, so its lines
do not pass through the pipe. The pipe never blocks a writer: a flood of core's lines past
its 1 MiB buffer loses lines rather than stalls the server."""
from __future__ import annotations

import faulthandler
import fcntl
import logging
import os
import re
import sys
import threading

log = logging.getLogger("grpc.core")
ABSL = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ ([^ \]]+)\] ?(.*)")  # before absl::InitializeLog: E0000 00:00:1744...
_captured = False
PIPE_BYTES = 1 << 20
LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}  # Abseil's severities


def capture() -> None:
    """From now on, until the process ends, fd 2 is read into logging (once per process)."""
    global _captured
    if _captured:
        return
    _captured = True
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    sys.stderr.flush()
    for handler in logging.getLogger().handlers:  # logs.setup's handler writes to sys.stderr: moved
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
            handler.setStream(stream)
    sys.stderr = stream
    if faulthandler.is_enabled():  # a crash's traceback must not wait on a thread that died with it
        faulthandler.enable(stream)
    read, write = os.pipe()
    try:  # room for bursts (GRPC_TRACE): 1 MiB, the usual most an unprivileged process may ask
        fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass
    # Non-blocking: core writes some lines from a thread holding the GIL, which the reader
    # needs; a full pipe would stall the whole process. Past the buffer, core's lines are lost.
    os.set_blocking(write, False)
    os.dup2(write, 2)
    os.close(write)
    # Never given back: lines core writes as the interpreter ends (grpc_shutdown's trace) would
    # come out raw; a daemon thread reads up to then.
    threading.Thread(target=_pump, args=(read,), name="grpc core log", daemon=True).start()


def _pump(fd: int) -> None:
    with os.fdopen(fd, "rb") as pipe:
        for raw in pipe:
            emit(raw.decode("utf-8", "replace").rstrip("\r\n"))


def emit(line: str) -> None:
    """One line core wrote, as a log record."""
    if not line.strip():
        return
    found = ABSL.fullmatch(line)
    if found is None:  # Abseil's "WARNING: All log messages before absl::InitializeLog()...", or a stray write
        log.warning("%s", line)
        return
    level, source, text = found.groups()
    log.log(LEVELS[level], "%s", text, extra={"fields": {"source": source}})
