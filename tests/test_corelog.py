"""gRPC core's own log lines (its C++ code writes them to fd 2) come out in the server's log
format: a real `offerd serve --log-json` with core told to log everything writes only JSON
lines, core's among them under the logger "grpc.core", from every worker."""
from __future__ import annotations

import json
import logging
import os

from offerd.client import Client
from offerd.server import corelog

from served import ADULT, Served


def verbose_core():
    """In the server's process only (not this one): core logs at debug level, with its API trace."""
    os.environ.update(GRPC_VERBOSITY="debug", GRPC_TRACE="api")


def test_core_lines_come_out_as_json_lines_of_their_own_logger(tmp_path):
    server = Served(tmp_path, "--workers", "2", "--log-json", preexec=verbose_core)
    try:
        server.workers(2)
        server.wait_log('"offerd serving on', 2)
        with Client(server.target) as c:
            for i in range(20):
                assert c.decide(["web_home"], f"c{i}", attributes=ADULT, dry_run=True).spaces[0].propositions
    finally:
        assert server.stop() == 0
    lines = server.output().splitlines()
    records = [json.loads(line) for line in lines]  # each line, whole, is JSON
    core = [r for r in records if r["logger"] == "grpc.core"]
    assert {r["worker"] for r in core} == {0, 1}
    assert any(r["level"] == "warning" and r["message"].startswith("Log level DEBUG is not suitable")
               and r["source"].startswith("log.cc:") for r in core), core[:5]
    assert any(r["level"] == "info" and r["message"].startswith("grpc_server_create(") for r in core)
    assert len(core) > 100  # the API trace of every call
    assert any(r["logger"] == "offerd.server" and r["message"].startswith("offerd serving on") for r in records)


def test_core_lines_are_parsed_into_records_of_their_level(caplog):
    caplog.set_level(logging.INFO, "grpc.core")
    corelog.emit("E1205 07:40:20.669861    6620 chttp2_transport.cc:1234] keepalive watchdog timeout")
    corelog.emit("I1205 07:40:20.669861 12 ev_posix.cc:9] polling")
    corelog.emit("F1205 07:40:20.669861 12 server.cc:99] assertion failed: x")
    corelog.emit("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    corelog.emit("E0000 00:00:1744377140.613412 35892123 init.cc:229] grpc_wait_for_shutdown_with_timeout() timed out.")
    corelog.emit("")
    got = [(r.levelname, r.getMessage(), getattr(r, "fields", None)) for r in caplog.records]
    assert got == [("ERROR", "keepalive watchdog timeout", {"source": "chttp2_transport.cc:1234"}),
                   ("INFO", "polling", {"source": "ev_posix.cc:9"}),
                   ("CRITICAL", "assertion failed: x", {"source": "server.cc:99"}),
                   ("WARNING", "WARNING: All log messages before absl::InitializeLog() is called are written to "
                               "STDERR", None),
                   ("ERROR", "grpc_wait_for_shutdown_with_timeout() timed out.", {"source": "init.cc:229"})]


def test_a_flood_of_core_lines_never_stalls_the_process(tmp_path):
    """Core writes some lines from a thread holding the GIL, which the pipe's reader needs: a
    blocking pipe, once full, froze the whole server (SIGTERM included). 8 MiB written at
    once to fd 2 by C code that keeps the GIL (ctypes.PyDLL) must return, lines lost or not."""
    import subprocess
    import sys

    script = (
        "import ctypes, logging\n"
        "from offerd.server import corelog\n"
        "logging.basicConfig()\n"
        "corelog.capture()\n"
        "libc = ctypes.PyDLL(None)  # PyDLL: the GIL is kept during the call, as core's threads may\n"
        "line = b'W1205 07:40:20.669861    6620 trace.cc:1] ' + b'x' * 200 + b'\\n'\n"
        "for _ in range(40000):\n"
        "    libc.write(2, line, len(line))\n"
        "print('done', flush=True)\n"
        "import time; time.sleep(1)  # the reader thread logs what the pipe held\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "done"
    assert "WARNING:grpc.core:" + "x" * 200 in run.stderr  # lines that fit came out as records
