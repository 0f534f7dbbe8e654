"""Servers for the tests, on free loopback ports: `offerd serve` as a separate process (worker
restarts, signals, kills, file size limits), or in this process on its own event loop thread."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc

from offerd.server.app import Config, create_server, stop_server
from offerd.server.workers import start_catalog
from offerd.store import Store
from offerd.store.records import Record

ADULT = {"age": 30, "country": "FR", "segment": "gold", "cart_total": 80.0}  # the bundled catalog offers to them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`offerd serve` in its own session (so the whole server can be killed at once), its
    log in a file (a pipe left unread would block it)."""

    def __init__(self, data, *extra: str, port: int | None = None, preexec=None):
        if "--drain" not in extra:  # tests that stop a server do not wait out a drain they do not test
            extra = ("--drain", "0") + extra
        self.data, self.port = str(data), port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.data, f"serve-{time.monotonic_ns()}.log")
        os.makedirs(self.data, exist_ok=True)
        code = ("import sys; from offerd.cli import main; "
                f"sys.exit(main(['serve', '--listen', {self.target!r}, '--data', {self.data!r}, *{list(extra)!r}]))")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=preexec)
        with grpc.insecure_channel(self.target) as ch:
            grpc.channel_ready_future(ch).result(timeout=60)

    def output(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def workers(self, count: int, timeout: float = 30) -> list[int]:
        """The worker processes' pids, once there are `count` of them serving."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    pids = [int(p) for p in f.read().split()]
            except FileNotFoundError:
                pids = []
            if len(pids) == count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"{count} workers expected, saw {pids}:\n{self.output()}")

    def wait_log(self, text: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            assert time.monotonic() < deadline, f"{count} x {text!r} expected:\n{self.output()}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole server: the supervisor and every worker, with no warning."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


class Running:
    """A server on its own event loop thread, as in production, on a free loopback port."""

    def __init__(self, data: str, **config):
        self.store = Store(os.path.join(data, "db"))
        start_catalog(self.store, None)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        cfg = Config(listen="127.0.0.1:0", data=data, **config)
        self.server, self.port = self.run(create_server(cfg.listen, cfg, self.store))
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self):
        self.run(stop_server(self.server, 1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def stored(store: Store, prop_hex: str) -> Record | None:
    with store.env.begin() as txn:
        hkey = txn.get(bytes.fromhex(prop_hex), db=store.db["props"])
        data = hkey and txn.get(hkey, db=store.db["history"])
    return Record.decode(data) if data else None
