"""`offerd cluster local`: a whole cluster on loopback, for trying and testing: Redis, N
shards (`offerd serve --cluster`), HAProxy in front, each a process of its own, logs and
data under one folder."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from . import balancer

LOOPBACK = "127.0.0.1"


class ClusterError(RuntimeError):
    """A part that cannot start, with what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def free_ports(count: int, avoid: int | None = None) -> list[int]:
    """`count` distinct ports free now, none of them `avoid`: the sockets stay bound until all
    are chosen (ports chosen one at a time, each socket closed at once, can come back twice)."""
    held, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket()
            held.append(s)
            s.bind((LOOPBACK, 0))
            if s.getsockname()[1] != avoid:
                ports.append(s.getsockname()[1])
        return ports
    finally:
        for s in held:
            s.close()


def _need(program: str, package: str) -> str:
    path = shutil.which(program) or next((p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}")
                                          if os.path.exists(p)), None)
    if path is None:
        raise ClusterError(f"{program} is not installed: `apt-get install {package}` (Debian's package), "
                           "or `make cluster`, which installs it")
    return path


def _healthy(target: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Whether a gRPC server answers SERVING at `target` within `timeout` seconds (False at
    once if `proc`, the one that should answer, has ended)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and (proc is None or proc.poll() is None):
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    return False


class LocalCluster:
    """Start with `start()`, stop with `stop()`. Each part can be stopped, killed and started
    again on its own (the tests do): `shard(i)`, `redis`, `balancer`."""

    def __init__(self, folder: str, shards: int, listen: str, *, catalog: str | None = None,
                 workers: int = 1, extra: tuple[str, ...] = (), check_every: float = 0.5):
        if shards < 1:
            raise ClusterError("a cluster has at least one shard")
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            raise ClusterError(f"--listen {listen!r}: give HOST:PORT")
        self.folder, self.listen, self.catalog = os.path.abspath(folder), listen, catalog
        self.workers, self.extra, self.check_every = workers, tuple(extra), check_every
        self._listen_port = int(port)
        self._choose_ports(shards)
        self.procs: dict[str, subprocess.Popen] = {}
        self.cluster_file = os.path.join(self.folder, "cluster.json")

    # --- the parts -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.folder, f"{name}.log"), "a")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def start_redis(self) -> None:
        """Redis keeps no file: when it restarts, it is empty and the shards refill it."""
        path = _need("redis-server", "redis-server")
        host, port = self.redis_address.rsplit(":", 1)
        self._spawn("redis", [path, "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
                              "--dir", self.folder, "--protected-mode", "no"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, int(port)), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise ClusterError(f"redis-server did not start on {self.redis_address}: see {self.folder}/redis.log")

    def start_shard(self, i: int, wait: bool = True) -> None:
        argv = [sys.executable, "-m", "offerd.cli", "serve", "--cluster", self.cluster_file, "--shard", str(i),
                "--listen", self.shards[i], "--data", os.path.join(self.folder, f"shard-{i}"),
                "--workers", str(self.workers), *self.extra]
        if self.catalog:
            argv += ["--catalog", self.catalog]
        proc = self._spawn(f"shard-{i}", argv)
        if wait and not _healthy(self.shards[i], 60, proc):
            raise ClusterError(f"shard {i} did not start on {self.shards[i]}: see {self.folder}/shard-{i}.log")

    def start_balancer(self) -> None:
        path = _need("haproxy", "haproxy")
        config = os.path.join(self.folder, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(balancer.haproxy(self.listen, self.shards, check_every=self.check_every))
        proc = self._spawn("haproxy", [path, "-f", config, "-db"])
        if not _healthy(self.listen, 30, proc):
            raise ClusterError(f"HAProxy did not start on {self.listen}: see {self.folder}/haproxy.log")

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)

    def wait(self, name: str, timeout: float = 30) -> int | None:
        proc = self.procs.get(name)
        try:
            return None if proc is None else proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(name, signal.SIGKILL)
            return proc.wait()

    # --- the whole -----------------------------------------------------------------------

    def start(self) -> None:
        """Redis, the shards, then the balancer. The ports of Redis and the shards were free
        when chosen, but another process may bind one before a part does: then they are
        chosen again and everything restarted (at most three times)."""
        for attempt in range(3):
            try:
                return self._start()
            except ClusterError:
                if attempt == 2 or not self._port_taken():
                    raise
                self._choose_ports(len(self.shards))

    def _choose_ports(self, shards: int) -> None:
        *ports, redis = free_ports(shards + 1, avoid=self._listen_port)
        self.shards = [f"{LOOPBACK}:{p}" for p in ports]
        self.redis_address = f"{LOOPBACK}:{redis}"

    def _port_taken(self) -> bool:
        """Did Redis or a shard just fail to bind its port?"""
        for name in ["redis"] + [f"shard-{i}" for i in range(len(self.shards))]:
            try:
                with open(os.path.join(self.folder, f"{name}.log"), "rb") as f:
                    f.seek(max(0, os.path.getsize(f.name) - 400))
                    if b"Address already in use" in f.read():
                        return True
            except OSError:
                continue
        return False

    def _start(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        with open(self.cluster_file, "w") as f:
            json.dump({"shards": self.shards, "redis": self.redis_address, "secret": os.urandom(16).hex()}, f,
                      indent=2)
        try:
            self.start_redis()
            for i in range(len(self.shards)):
                self.start_shard(i, wait=False)
            for i, address in enumerate(self.shards):
                if not _healthy(address, 90, self.procs[f"shard-{i}"]):
                    raise ClusterError(f"shard {i} did not start on {address}: see {self.folder}/shard-{i}.log")
            self.start_balancer()
        except BaseException:
            self.stop()
            raise

    def stop(self, drain: bool = True) -> None:
        """The balancer first (no new calls), then the shards (each drains), then Redis."""
        order = ["haproxy"] + [f"shard-{i}" for i in range(len(self.shards))] + ["redis"]
        self.signal("haproxy", signal.SIGTERM)
        self.wait("haproxy", 10)
        for name in order[1:-1]:
            self.signal(name, signal.SIGTERM if drain else signal.SIGKILL)
        for name in order[1:-1]:
            self.wait(name, 60)
        self.signal("redis", signal.SIGTERM)
        self.wait("redis", 10)


def run(folder: str, shards: int, listen: str, catalog: str | None, workers: int, extra=()) -> int:
    """The command: start, print the address, stop everything on Ctrl-C or SIGTERM."""
    cluster = LocalCluster(folder, shards, listen, catalog=catalog, workers=workers, extra=tuple(extra))
    stopping = []
    previous = {sig: signal.signal(sig, lambda *_: stopping.append(1)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        t = time.monotonic()
        try:
            cluster.start()
        except ClusterError as e:
            print(f"offerd cluster local: {e}", file=sys.stderr)
            return 1
        print(f"offerd cluster: {shards} shard(s) behind HAProxy on {listen} (the address gateways call), "
              f"started in {time.monotonic() - t:.1f} s", flush=True)
        for i, address in enumerate(cluster.shards):
            print(f"  shard {i}: {address}, data {folder}/shard-{i}, log {folder}/shard-{i}.log", flush=True)
        print(f"  Redis: {cluster.redis_address}; cluster file {cluster.cluster_file}", flush=True)
        print("Ctrl-C stops everything", flush=True)
        reported = set()
        while not stopping:
            time.sleep(0.2)
            for name, proc in list(cluster.procs.items()):
                if proc.poll() is not None and name not in reported:
                    reported.add(name)
                    print(f"offerd cluster: {name} exited (code {proc.returncode}); see {folder}/{name}.log",
                          file=sys.stderr, flush=True)
        print("offerd cluster: stopping (the shards drain)", flush=True)
        cluster.stop()
        print("offerd cluster: stopped", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
