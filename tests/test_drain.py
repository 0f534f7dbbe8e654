"""A stop that drains: on SIGTERM (or Ctrl-C) health turns NOT_SERVING at once, Watch streams
hear it, calls are still answered for `--drain` seconds, then the server stops gracefully,
its Watch streams end, and nothing it acknowledged is lost. A second stop signal cuts the
drain short."""
import os
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from offerd.client import Client
from offerd.store import Store
from served import ADULT, Served, stored

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class Watcher:
    """A health Watch stream read on a thread: the statuses seen, and how the stream ended."""

    def __init__(self, target: str):
        self.channel = grpc.insecure_channel(target)
        self.seen, self.ended, self.error = [], threading.Event(), None
        self.stream = health_pb2_grpc.HealthStub(self.channel).Watch(health_pb2.HealthCheckRequest(service=""))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for reply in self.stream:
                self.seen.append(reply.status)
        except grpc.RpcError as e:
            self.error = e.code()
        finally:
            self.ended.set()

    def wait_for(self, status, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while status not in self.seen:
            assert time.monotonic() < deadline, f"health never said {status}: {self.seen}"
            time.sleep(0.02)


def check(target: str):
    with grpc.insecure_channel(target) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_turns_health_off_first_keeps_answering_then_ends_the_watch_streams(tmp_path, workers):
    s = Served(tmp_path, "--drain", "2", "--workers", str(workers))
    watch = Watcher(s.target)
    watch.wait_for(SERVING)
    s.proc.send_signal(signal.SIGTERM)
    watch.wait_for(NOT_SERVING)  # at once, not at the end of the drain
    ids = []
    with Client(s.target, timeout=5) as c:
        assert check(s.target) == NOT_SERVING
        for i in range(20):  # well inside the 2 s: the server must still decide, and record
            d = c.decide(["web_home"], f"drained-{i}", attributes=ADULT)
            ids += [p.id for p in d.spaces[0].propositions]
    assert ids and s.proc.poll() is None
    assert s.proc.wait(30) == 0, s.output()
    assert watch.ended.wait(10) and watch.error is None, watch.error  # the stream ended, not cut
    assert watch.seen[-1] == NOT_SERVING
    out = s.output()
    assert "draining: health NOT_SERVING" in out and "Traceback" not in out, out
    s.log.close()
    store = Store(os.path.join(tmp_path, "db"))
    try:
        assert all(stored(store, pid) is not None for pid in ids)  # every answer given while draining was kept
    finally:
        store.close()


def test_a_second_stop_signal_ends_the_drain_at_once(tmp_path):
    s = Served(tmp_path, "--drain", "600")
    watch = Watcher(s.target)
    watch.wait_for(SERVING)
    s.proc.send_signal(signal.SIGTERM)
    watch.wait_for(NOT_SERVING)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0, s.output()  # not after the 600 s of drain asked for
    s.log.close()


@pytest.mark.parametrize("how", ["ctrl-c", "group-sigterm"])
def test_a_stop_sent_to_every_process_drains_once_and_a_second_one_stops(tmp_path, how):
    """A terminal's Ctrl-C sends SIGINT to the supervisor and every worker at once; systemd
    (KillMode=control-group) and `kill -- -PGID` send SIGTERM to every process, and the
    supervisor forwards its own. Either way the workers must take it as one stop signal
    (drain, still answering), not two; a second one (Ctrl-C again, or SIGTERM to the
    supervisor) then stops them."""
    first = signal.SIGINT if how == "ctrl-c" else signal.SIGTERM
    s = Served(tmp_path, "--drain", "600", "--workers", "2")
    workers = s.workers(2)
    watch = Watcher(s.target)
    watch.wait_for(SERVING)
    os.killpg(s.proc.pid, first)
    watch.wait_for(NOT_SERVING)
    with Client(s.target, timeout=5) as c:
        for i in range(10):  # both workers still answer: the drain was not cut short
            assert c.decide(["web_home"], f"{how}-{i}", attributes=ADULT).spaces[0].propositions
    assert all(os.path.exists(f"/proc/{pid}") for pid in workers), s.output()
    if how == "ctrl-c":
        os.killpg(s.proc.pid, signal.SIGINT)
    else:
        s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0, s.output()
    s.log.close()


def test_a_stop_with_no_drain_still_says_not_serving_and_ends_the_watch_streams(tmp_path):
    s = Served(tmp_path, "--drain", "0")
    watch = Watcher(s.target)
    watch.wait_for(SERVING)
    assert s.stop() == 0
    assert watch.ended.wait(10) and watch.error is None, watch.error
    assert watch.seen[-1] == NOT_SERVING


def test_a_stream_another_shard_relays_ends_answered_when_this_shard_stops(tmp_path):
    """A shard's stop ends the streams other shards relay to it (their reader cancelled): what
    was read is answered and the stream ends OK at once, rather than holding the stop until
    its grace and ending the other shard's stream with an error."""
    import asyncio

    from offerd.client import decide_request
    from offerd.server.app import stop_server
    from offerd.cluster.routing import FORWARDED
    from offerd.cluster.topology import Topology
    from offerd.v1 import offerd_pb2_grpc as rpc
    from served import Running

    topology = Topology(("127.0.0.1:1", "127.0.0.1:2"), None, 0, secret="0123456789abcdef")
    server = Running(str(tmp_path), cluster=topology)
    stopped = False
    try:
        with grpc.insecure_channel(server.target) as channel:
            held = threading.Event()

            def requests():  # as a shard relays: its mark, a request this shard owns, then held open
                yield decide_request(["web_home"], "a", attributes=ADULT, dry_run=True)
                held.wait(30)

            replies = rpc.DecisionServiceStub(channel).DecideStream(
                requests(), timeout=20, metadata=((FORWARDED, topology.token),))
            assert next(replies).WhichOneof("reply") == "decision"

            async def stop():  # a grace longer than the call's deadline: a stream left open fails the call
                await asyncio.wait_for(stop_server(server.server, grace=30), 60)

            server.run(stop())
            stopped = True
            assert list(replies) == []  # ended OK, nothing more: no error raised by the iterator
            held.set()
    finally:
        if stopped:
            server.loop.call_soon_threadsafe(server.loop.stop)
        else:
            server.stop()
