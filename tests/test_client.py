"""offerd.client on its own: a gateway imports it with grpcio, protobuf and offerd's
protobuf code only, and talks to a real server."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import grpc
import pytest

from offerd.client import Client
from offerd.store import Contact, Store
from served import ADULT, Served, free_port

GATEWAY = """
import datetime, json, sys
from offerd.client import Client

heavy = ("lmdb", "lark", "offerd.engine", "offerd.store", "offerd.lang", "offerd.compiler", "offerd.server")
loaded = lambda: sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy)))
before = loaded()
with Client(sys.argv[1], timeout=30) as c:
    d = c.decide(["web_home"], "gateway", attributes={"age": 30, "country": "FR", "segment": "gold",
                 "cart_total": 80.0, "tags": {"student"}, "birthday": datetime.date(1990, 1, 1), "vip": True},
                 context={"page": "home", "device": "mobile"})
    offers = [p.offer for p in d.spaces[0].propositions]
    changed = c.record(d.spaces[0].propositions[0].id, "presented")
print(json.dumps({"before": before, "after": loaded(), "offers": offers, "changed": changed}))
"""


def test_the_client_imports_without_the_server_and_decides_on_a_real_one(tmp_path):
    server = Served(tmp_path / "data", "--workers", "1")
    try:
        out = subprocess.run([sys.executable, "-c", GATEWAY, server.target], capture_output=True, text=True,
                             timeout=120)
    finally:
        assert server.stop() == 0, server.output()
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["before"] == [] and got["after"] == [], got  # neither LMDB, lark nor the engine came along
    assert got["offers"] and got["changed"] is True


def test_retry_for_waits_out_a_server_that_is_not_up_yet_where_a_retry_is_safe(tmp_path):
    """A recorded decision is retried with a request id made for it (so it counts once); one
    for an unknown contact, which nothing could key, is not retried at all."""
    port = free_port()
    servers = []
    starter = threading.Timer(1.0, lambda: servers.append(Served(tmp_path / "data", "--workers", "1", port=port)))
    starter.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=5, retry_for=60) as c:
            with pytest.raises(grpc.RpcError) as e:  # before the server is up: not retried
                c.decide(["web_home"], None, attributes=ADULT)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            d = c.decide(["web_home"], "late", attributes=ADULT)
            assert d.spaces[0].propositions and d.request_id  # retried, under an id made for it
            again = c.decide(["web_home"], "late", attributes=ADULT, request_id=d.request_id)
            assert again.replayed  # the id it was given answers the retry of the same request
            again.replayed = False
            assert again == d
    finally:
        starter.join()
        for s in servers:
            s.stop()
    with Store(str(tmp_path / "data" / "db")) as store:  # counted once
        assert len(store.read_history(Contact("late"))) == len(d.spaces[0].propositions)
