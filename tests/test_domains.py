"""Closed sets and ranges in schemas: the checked Catalog.domains, inputs outside them refused
by the engine (real LMDB in a temp dir), the gRPC server (INVALID_ARGUMENT) and populations,
stored values outside them left out, and generated populations drawn within them."""
from __future__ import annotations

import datetime
import json

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offerd import lang
from offerd.client import Client
from offerd.engine import BadRequest, Engine, Request
from offerd.lang.catalog import Domain
from offerd.lang.values import InputError, check_attributes
from offerd.offline import population
from offerd.store import Contact, Store

from served import Running

T = datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.timezone.utc)
SCHEMA = """
schema contact {
  segment: string in ["gold", "platinum", "basic"]
  tags: set<string> in ["vip", "new", "churn"]
  age: int in 0 to 120
  score: float in 0.0 to 1.0
  joined: date in 2000-01-01 to 2030-12-31
  temp: int in -10 to 10
  name: string
}
schema context { device: string in ["web", "app", "kiosk"] }
"""
OFFERS = """
space web { limit 1  fallback none }
offer gold { spaces web  weight 10  eligible contact.segment == "gold" }
offer known { spaces web  weight 5  eligible has(contact.age) }
offer none { spaces web }
"""
CATALOG = {"00.offer": SCHEMA + OFFERS}


@pytest.fixture
def engine(tmp_path):
    store = Store(str(tmp_path / "db"))
    yield Engine(store, lang.check(CATALOG))
    store.close()


def test_domains_in_the_checked_catalog():
    d = lang.check(CATALOG).domains
    assert d[("contact", "segment")] == Domain(values=frozenset({"gold", "platinum", "basic"}),
                                               listed=("gold", "platinum", "basic"))
    assert d[("contact", "tags")].values == {"vip", "new", "churn"}
    assert (d[("contact", "age")].low, d[("contact", "age")].high) == (0, 120)
    assert d[("contact", "score")].low == 0.0 and type(d[("contact", "score")].high) is float
    assert d[("contact", "joined")].high == datetime.date(2030, 12, 31)
    assert (d[("contact", "temp")].low, d[("contact", "temp")].high) == (-10, 10)
    assert list(d[("context", "device")].listed) == ["web", "app", "kiosk"]
    assert ("contact", "name") not in d
    assert lang.check({"a.offer": "schema contact { age: int }"}).domains == {}


def test_check_attributes_refuses_values_outside():
    c = lang.check(CATALOG)
    ok = check_attributes(c.contact, {"segment": "gold", "tags": ["vip"], "age": 120, "score": 1,
                                      "joined": datetime.date(2000, 1, 1), "temp": -10}, "contact", c.domains)
    assert ok["score"] == 1.0 and ok["tags"] == frozenset({"vip"})
    with pytest.raises(InputError) as e:
        check_attributes(c.contact, {"segment": "afluent", "age": 150, "tags": ["vip", "gone"], "score": -0.5,
                                     "joined": datetime.date(1999, 12, 31), "temp": -11}, "contact", c.domains)
    assert sorted(e.value.problems) == sorted([
        'contact.segment: "afluent" is not one of "gold", "platinum", "basic"',
        "contact.age: 150 is outside 0 to 120",
        'contact.tags: "gone" is not one of "vip", "new", "churn"',
        "contact.score: -0.5 is outside 0.0 to 1.0",
        "contact.joined: 1999-12-31 is outside 2000-01-01 to 2030-12-31",
        "contact.temp: -11 is outside -10 to 10"])
    with pytest.raises(InputError, match='context.device: "tv" is not one of "web", "app", "kiosk"'):
        check_attributes(c.context, {"device": "tv"}, "context", c.domains)
    # without the domains, only the types are checked
    assert check_attributes(c.contact, {"age": 150}, "contact") == {"age": 150}


def test_the_engine_refuses_requests_outside(engine):
    with pytest.raises(BadRequest, match='contact.segment: "afluent" is not one of "gold", "platinum", "basic"'):
        engine.decide(Request(("web",), "al", attributes={"segment": "afluent"}, time=T))
    with pytest.raises(BadRequest, match="contact.age: 150 is outside 0 to 120"):
        engine.decide(Request(("web",), "al", attributes={"age": 150}, time=T))
    with pytest.raises(BadRequest, match='context.device: "tv" is not one of'):
        engine.decide(Request(("web",), "al", context={"device": "tv"}, time=T))
    d = engine.decide(Request(("web",), "al", attributes={"segment": "gold", "age": 0},
                              context={"device": "kiosk"}, time=T, dry_run=True))
    assert d.offers("web") == ["gold"]


def test_stored_values_outside_a_new_domain_are_absent(engine):
    """A profile stored under a catalog without the domains: a value now outside is left out,
    like a value whose type changed; the others are used."""
    engine.load(lang.check({"00.offer": SCHEMA.replace(' in ["gold", "platinum", "basic"]', "")
                            .replace(" in 0 to 120", "") + OFFERS}))
    engine.store.put_profile(Contact("al"), {"segment": "silver", "age": 150, "name": "Al"})
    engine.store.put_profile(Contact("bo"), {"segment": "gold", "age": 40})
    # `segmented` would win for al if the stored "silver" were read
    engine.load(lang.check({"00.offer": SCHEMA + OFFERS
                            + "offer segmented { spaces web  weight 3  eligible has(contact.segment) }\n"}))
    assert engine.decide(Request(("web",), "al", time=T, dry_run=True)).offers("web") == ["none"]
    assert engine.decide(Request(("web",), "bo", time=T, dry_run=True)).offers("web") == ["gold"]
    # a value given with the request still counts
    d = engine.decide(Request(("web",), "al", attributes={"age": 33}, time=T, dry_run=True))
    assert d.offers("web") == ["known"]


@pytest.fixture
def client(tmp_path):
    server = Running(str(tmp_path), admin_token="s3cret")
    with Client(server.target, admin_token="s3cret") as c:
        c.deploy(CATALOG)
        yield c
    server.stop()


def test_the_server_refuses_values_outside(client):
    cases = [
        (lambda: client.decide(["web"], "al", attributes={"segment": "afluent"}),
         'contact.segment: "afluent" is not one of "gold", "platinum", "basic"'),
        (lambda: client.decide(["web"], "al", attributes={"age": 150}), "contact.age: 150 is outside 0 to 120"),
        (lambda: client.decide(["web"], "al", context={"device": "tv"}),
         'context.device: "tv" is not one of "web", "app", "kiosk"'),
        (lambda: client.upsert_profile("al", {"tags": ["vip", "vipp"]}),
         'contact.tags: "vipp" is not one of "vip", "new", "churn"'),
        (lambda: list(client.simulate(["web"], b'{"id": "a"}\n', context_json='{"device": "tv"}')),
         'context.device: "tv" is not one of'),
    ]
    for call, text in cases:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert text in e.value.details()
    client.upsert_profile("al", {"segment": "gold", "age": 30})
    assert client.decide(["web"], "al").spaces[0].propositions[0].offer == "gold"


def test_population_rows_outside_are_bad_rows(tmp_path):
    catalog = lang.check(CATALOG)
    rows = [{"id": "a", "age": 30}, {"id": "b", "age": 130}, {"id": "c", "segment": "iron"},
            {"id": "d", "joined": "2040-01-01", "tags": ["vip"]}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(population.read(str(path), catalog))
    assert isinstance(got[0], population.Row)
    assert [str(r) for r in got[1:]] == ["line 2: contact.age: 130 is outside 0 to 120",
                                         'line 3: contact.segment: "iron" is not one of "gold", "platinum", "basic"',
                                         "line 4: contact.joined: 2040-01-01 is outside 2000-01-01 to 2030-12-31"]
    csv = tmp_path / "p.csv"
    csv.write_text("id,tags,score\na,vip|new,0.5\nb,vip|old,0.5\nc,,1.5\n")
    got = list(population.read(str(csv), catalog))
    assert isinstance(got[0], population.Row)
    assert [str(r) for r in got[1:]] == ['line 3: contact.tags: "old" is not one of "vip", "new", "churn"',
                                         "line 4: contact.score: 1.5 is outside 0.0 to 1.0"]


def test_generated_populations_stay_inside(tmp_path):
    catalog = lang.check({"00.offer": SCHEMA + OFFERS.replace(
        "has(contact.age)", "contact.age > 119 and contact.temp < 10 and contact.score > 0.99")})
    rows = list(population.generate(catalog, 500, seed=3))
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = list(population.read(str(path), catalog))
    assert all(isinstance(r, population.Row) for r in read), [str(r) for r in read if not isinstance(r, population.Row)][:3]
    seen = {k: {r.attributes[k] for r in read if k in r.attributes} for k in ("segment", "age", "temp")}
    assert seen["segment"] == {"gold", "platinum", "basic"}
    assert 120 in seen["age"] and min(seen["temp"]) < 0  # near the rules' literals, and across the range


OPS = {"==": lambda x, c: x == c, "!=": lambda x, c: x != c, "<": lambda x, c: x < c,
       "<=": lambda x, c: x <= c, ">": lambda x, c: x > c, ">=": lambda x, c: x >= c}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(-20, 20), st.integers(0, 15), st.sampled_from(sorted(OPS)), st.integers(-40, 40),
       st.booleans())
def test_range_warnings_match_every_value(low, width, op, c, flipped):
    """A comparison of a ranged int with a literal is warned never true exactly when no value
    of the range makes it true, always true exactly when every value does."""
    high = low + width
    rule = f"{c} {op} contact.x" if flipped else f"contact.x {op} {c}"
    catalog = lang.check({"a.offer": f"schema contact {{ x: int in {low} to {high} }}\nspace web {{ limit 1 }}\n"
                                     f"offer o {{ spaces web  eligible {rule} }}\n"})
    truths = {OPS[op](c, x) if flipped else OPS[op](x, c) for x in range(low, high + 1)}
    messages = " ".join(d.message for d in catalog.diagnostics)
    assert ("never true" in messages) == (truths == {False}), (rule, low, high, messages)
    assert ("always true" in messages) == (truths == {True}), (rule, low, high, messages)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(-20, 20), st.integers(0, 15), st.lists(st.integers(-40, 40), max_size=4),
       st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4))
def test_check_attributes_refuses_exactly_the_values_outside(low, width, items, words):
    catalog = lang.check({"a.offer": f'schema contact {{ x: int in {low} to {low + width}  ys: list<int> in {low} to {low + width}'
                                     f'  w: set<string> in ["a", "b"] }}'})
    for values in ({"x": i} for i in items):
        inside = all(low <= v <= low + width for v in values.values())
        try:
            check_attributes(catalog.contact, values, "contact", catalog.domains)
            assert inside, values
        except InputError:
            assert not inside, values
    for values in ({"ys": items}, {"w": words}):
        inside = all(low <= v <= low + width for v in items) if "ys" in values else set(words) <= {"a", "b"}
        try:
            check_attributes(catalog.contact, values, "contact", catalog.domains)
            assert inside, values
        except InputError:
            assert not inside, values
