"""offerd.client on its own: a gateway imports it with grpcio, protobuf and offerd's
protobuf code only, and talks to a real server."""
from __future__ import annotations

import json
import subprocess
import sys

from served import Served

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
