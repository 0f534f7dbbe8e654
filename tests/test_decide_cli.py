"""`offerd decide` as a user runs it, against a real server process on loopback: --attr and
--context typed by the live schema."""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures

import grpc
import pytest

from offerd.v1 import offerd_pb2 as pb
from offerd.v1 import offerd_pb2_grpc as rpc
from served import Served, free_port

BANK = """
schema contact { age: int  income: int  savings: int  marketing_consent: bool
                 segment: string in ["mass", "affluent", "young"]  products: set<string>  zip: string
                 member_since: date }
schema context { channel: string }
timezone "Europe/Paris"
let adult = contact.age >= 18
space call { limit 2  fallback thanks  fields script }

category sales {
  eligible contact.marketing_consent and adult and contact.income >= 20000 and context.channel != "kiosk"
  suppress 90d after rejected
}
offer loan {
  category sales  spaces call  weight 10
  eligible contact.segment == "mass" or "card" in contact.products
  cap 2 per contact per 7d
  content call { script "Offer the personal loan: up to {contact.income * 3} EUR over five years, first month free, for members since {contact.member_since ?? today}." }
}
offer card {
  category sales  spaces call  weight 5
  cap 1 per contact per calendar week
  content call { script "Offer the gold card." }
}
offer local_branch {
  spaces call  weight 3
  eligible contact.zip in ["01234", "75001"]
  content call { script "Invite them to the branch near {contact.zip}." }
}
offer saver {
  spaces call  weight 4 + contact.savings / 1000
  content call { script "Offer the savings plan." }
}
offer rare {
  spaces call  weight 1
  eligible context.channel == "branch"
  cap 1 total
  content call { script "Rare." }
}
offer thanks { spaces call  content call { script "Thank the customer." } }
"""
RICH = ["age=40", "income=50000", "marketing_consent=true", "segment=mass", "products=card", "savings=1000"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("decide-cli")
    (root / "catalog").mkdir()
    (root / "catalog" / "bank.offer").write_text(BANK)
    s = Served(root / "data", "--workers", "1", "--catalog", str(root / "catalog"))
    yield s
    assert s.stop() == 0, s.output()


def decide(server, *args, attrs=RICH, columns=100):
    argv = [sys.executable, "-m", "offerd.cli", "decide", *args, "--server", server.target]
    for a in attrs:
        argv += ["--attr", a]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": str(columns)})
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.mark.parametrize("option, value, said", [
    ("--attr", "age=seventeen", 'offerd: --attr age=seventeen: contact.age is an int, and "seventeen" is not a '
                                "whole number such as 42"),
    ("--attr", "age=1_000", "contact.age is an int"),
    ("--attr", "member_since=2021-02-29", "contact.member_since is a date, and \"2021-02-29\" is not a day of the "
                                          "calendar"),
    ("--attr", "member_since=01/02/2020", "is not a date as YYYY-MM-DD"),
    ("--attr", "marketing_consent=yes", 'contact.marketing_consent is a bool, and "yes" is not true or false'),
    ("--attr", "agee=3", "offerd: --attr agee=3: schema contact has no attribute agee; did you mean age?"),
    ("--context", "chanel=web", "schema context has no attribute chanel; did you mean channel?"),
    ("--attr", "age", "offerd: --attr 'age': expected NAME=VALUE"),
])
def test_a_value_its_type_refuses_or_an_unknown_name_exits_2_with_one_line(server, option, value, said):
    r = decide(server, "call", "bad", option, value, attrs=[])
    assert r.returncode == 2, r.stdout
    assert r.stderr.count("\n") == 1 and said in r.stderr, r.stderr
    assert r.stdout == ""


def test_a_server_that_is_down_is_one_line_too():
    r = subprocess.run([sys.executable, "-m", "offerd.cli", "decide", "call", "--attr", "age=3", "--server",
                        f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("offerd: UNAVAILABLE: ") and "Traceback" not in r.stderr


class _Older(rpc.DecisionServiceServicer):
    """A server from before the Schema call: Decide only (Schema answers UNIMPLEMENTED)."""

    def __init__(self):
        self.requests = []

    def Decide(self, request, context):
        self.requests.append(request)
        return pb.DecideResponse(spaces=[pb.SpaceDecision(space="call")], catalog="0" * 64)


def test_a_server_without_schema_gets_values_typed_by_their_shape():
    older = _Older()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    rpc.add_DecisionServiceServicer_to_server(older, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        r = subprocess.run([sys.executable, "-m", "offerd.cli", "decide", "call", "--attr", "zip=01234",
                            "--attr", "products=a,b", "--context", "channel=web", "--server", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60)
    finally:
        server.stop(0)
    assert r.returncode == 0, r.stderr
    (request,) = older.requests
    assert request.attributes["zip"].int_value == 1234  # as before: by its shape
    assert list(request.attributes["products"].strings_value.values) == ["a", "b"]
    assert request.context["channel"].string_value == "web"
