"""`offerd decide` as a user runs it, against a real server process on loopback: the table
(propositions; with --explain each offer's outcome, the clause not true, the values it read,
an `or`'s operands, a cap's count and when it frees), --json, and --attr/--context typed by
the live schema."""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from concurrent import futures

import grpc
import pytest

from offerd.client import Client
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


def test_the_table_shows_each_propositions_rank_offer_weight_id_and_content_shortened(server):
    r = decide(server, "call", "table1", "--context", "channel=web", columns=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.match(r"decided at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by catalog [0-9a-f]{12}$", lines[0]), lines[0]
    assert "call: 2 propositions" in lines
    row = next(line for line in lines if " loan " in line)
    m = re.match(r"  1\s+loan\s+10\s+([0-9a-f]{32})\s+script\s+(Offer the personal loan: up to 150000 EUR .*)$", row)
    assert m, row
    assert m[2].endswith("…") and len(row) == 120 and "for members since" not in row  # cut to the width
    assert re.search(r"^  2\s+card\s+5\s+[0-9a-f]{32}\s+script\s+Offer the gold card\.$", r.stdout, re.M)
    with Client(server.target) as c:  # the id shown is the proposition's: it can be recorded
        assert c.record(m[1], "presented") is True
    r = decide(server, "call", "--dry-run", attrs=[])  # no id in a dry run; the fallback has no weight
    assert re.search(r"^  1\s+thanks\s+fallback\s+dry run\s+script\s+Thank the customer\.$", r.stdout, re.M), r.stdout
    assert "call: 1 proposition (dry run)" in r.stdout and "outcome" not in r.stdout  # no explain asked


def test_explain_says_which_rule_removed_each_offer_and_why(server):
    """A contact lacking an attribute (null, not false), an `or` that fails, a cap full after
    two recorded decisions, a suppression after a rejection; --explain-all lists them all."""
    with Client(server.target) as c:
        attributes = {"age": 40, "income": 50000, "savings": 1000, "marketing_consent": True, "segment": "mass",
                      "products": ["card"]}
        first = c.decide(["call"], "ex1", attributes=attributes, context={"channel": "web"})
        c.decide(["call"], "ex1", attributes=attributes, context={"channel": "web"})
        assert [p.offer for p in first.spaces[0].propositions] == ["loan", "card"]
        c.record(first.spaces[0].propositions[1].id, "rejected")  # the card: category sales is suppressed
    lacking = ["income=50000", "marketing_consent=true", "segment=affluent", "products=", "savings=1000"]  # no age
    r = decide(server, "call", "ex1", "--context", "channel=web", "--dry-run", "--explain-all", attrs=lacking,
               columns=200)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    loan = out[out.index("\n  loan "):out.index("\n  card ")]
    assert re.search(r"^  loan\s+not eligible, by category sales at bank\.offer:11:3$", loan, re.M), loan
    assert ('rule    eligible contact.marketing_consent and adult and contact.income >= 20000 and '
            'context.channel != "kiosk"') in loan
    assert "clause  adult is null — a value it needs is absent (bank.offer:11:42)" in loan
    assert "read    adult absent, contact.age absent" in loan
    assert re.search(r"^\s+also not eligible, by offer loan at bank\.offer:16:3$", loan, re.M)
    assert ('clause  contact.segment == "mass" or "card" in contact.products is false (bank.offer:16:12)') in loan
    assert 'either  contact.segment == "mass" is false: contact.segment = "affluent"' in loan
    assert 'or      "card" in contact.products is false: contact.products = []' in loan
    assert re.search(r"^\s+also capped, by offer loan at bank\.offer:17:3$", loan, re.M)
    m = re.search(r"count   2 of 2 in 7d \(proposed of offer loan, this contact\); "
                  r"frees (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", loan)
    assert m, loan
    frees = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    week = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=7)
    assert abs((frees - week).total_seconds()) < 120  # a week after the first of the two
    assert re.search(r"^\s+also suppressed, by category sales at bank\.offer:12:3$", loan, re.M)
    assert re.search(r"count   1 in 90d \(rejected of category sales, this contact\), none allowed; frees ", loan)
    assert "local_branch  not eligible" in out and "read    contact.zip absent" in out
    assert re.search(r"^  saver\s+won: rank 1, weight 5$", out, re.M)
    # --explain alone: the first rule only
    r = decide(server, "call", "ex1", "--context", "channel=web", "--dry-run", "--explain", attrs=lacking)
    assert "not eligible, by category sales" in r.stdout and "also" not in r.stdout


def test_long_lines_wrap_at_the_terminal_width_between_values_never_inside_one(server):
    lacking = ["income=50000", "marketing_consent=true", "segment=affluent", "products=current,savings",
               "savings=1000"]
    r = decide(server, "call", "wrap1", "--context", "channel=web", "--dry-run", "--explain-all", attrs=lacking,
               columns=80)
    assert r.returncode == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    # the rule wrapped under itself; the clause's result whole, its location on the next line
    assert re.search(r"^ {26}contact\.income >= 20000 and context\.channel != \"kiosk\"$", r.stdout, re.M), r.stdout
    assert re.search(r"^ +clause  adult is null — a value it needs is absent$", r.stdout, re.M), r.stdout
    assert re.search(r'^ +either  contact.segment == "mass" is false:\n +contact.segment = "affluent"$', r.stdout,
                     re.M), r.stdout


def test_a_lifetime_cap_never_frees(server):
    with Client(server.target) as c:  # nothing else is left to an unknown contact: `rare` is proposed, once for all
        assert [p.offer for p in c.decide(["call"], context={"channel": "branch"}).spaces[0].propositions] == ["rare"]
    r = decide(server, "call", "someone", "--context", "channel=branch", "--dry-run", "--explain", attrs=[],
               columns=200)
    assert "rare          capped, by offer rare at bank.offer:37:3" in r.stdout, r.stdout
    assert "count   1 of 1 ever (proposed of offer rare, all contacts); frees never (lifetime)" in r.stdout


def test_json_is_still_there(server):
    r = decide(server, "call", "js1", "--context", "channel=web", "--dry-run", "--explain", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [p["offer"] for p in d["spaces"][0]["propositions"]] == ["loan", "card"]
    assert "why" in next(x for x in d["spaces"][0]["explain"] if x["offer"] == "local_branch")


def test_attributes_are_typed_by_the_live_schema_not_by_their_shape(server):
    # a set<string> of one item, a string that looks like an int, a date
    attrs = ["income=50000", "marketing_consent=true", "age=40", "segment=young", "products=current",
             "zip=01235", "member_since=2020-02-29"]
    r = decide(server, "call", "ty1", "--context", "channel=web", "--dry-run", "--explain", attrs=attrs, columns=200)
    assert r.returncode == 0, r.stderr
    assert 'or      "card" in contact.products is false: contact.products = ["current"]' in r.stdout
    assert 'read    contact.zip = "01235"' in r.stdout
    attrs = ["income=50000", "marketing_consent=true", "age=40", "segment=young", "products=current, card",
             "zip=01234", "member_since=2020-02-29"]
    r = decide(server, "call", "ty1", "--context", "channel=web", "--dry-run", "--json", attrs=attrs)
    assert r.returncode == 0, r.stderr
    content = {p["offer"]: p["content"]["script"] for p in json.loads(r.stdout)["spaces"][0]["propositions"]}
    assert content["loan"].endswith("for members since 2020-02-29.")  # a date, and "card" among the products


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
    assert "call: no proposition" in r.stdout
    (request,) = older.requests
    assert request.attributes["zip"].int_value == 1234  # as before: by its shape
    assert list(request.attributes["products"].strings_value.values) == ["a", "b"]
    assert request.context["channel"].string_value == "web"


def test_a_value_that_is_not_utf8_is_one_line_too(server):
    r = decide(server, "call", "bad", "--attr", b"segment=caf\xe9", attrs=[])  # Latin-1 bytes on the command line
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not UTF-8 text" in r.stderr, r.stderr
