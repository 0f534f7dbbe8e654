"""Explain says why: the first clause not true and the values it read (absent marked), a
cap's or suppression's count, limit and free-up time, and with explain_all every rule that
removed an offer. Real LMDB in a temp dir; times exact to the microsecond."""
from __future__ import annotations

import datetime

import pytest

from offerd.engine import Engine, Request
from offerd.lang import check
from offerd.store import Store

UTC = datetime.timezone.utc
T = datetime.datetime(2026, 11, 4, 9, 30, tzinfo=UTC)  # a Wednesday
CATALOG = {"00_schema.offer": """
schema contact { age: int  income: int  savings: int  marketing_consent: bool  segment: string
                 products: set<string> }
schema context { channel: string }
timezone "Europe/Paris"
let adult = contact.age >= 18
space call { limit 1  fallback none }
""", "10_sales.offer": """
category sales {
  eligible contact.marketing_consent and adult and contact.income >= 20000 and context.channel != "kiosk"
  suppress 90d after rejected
}
offer loan {
  category sales  spaces call  weight 10
  eligible contact.segment == "mass" or "card" in contact.products
  cap 2 per contact per 7d
}
offer card {
  category sales  spaces call  weight 5
  cap 1 per contact per calendar week
}
offer saver {
  spaces call  weight 4 + contact.savings / 1000
  valid 2026-12-01 to 2026-12-31
}
offer rare {
  spaces call  weight 1
  cap 1 total
}
offer none { spaces call }
"""}
RICH = {"age": 40, "income": 50000, "marketing_consent": True, "segment": "mass", "products": {"card"},
        "savings": 1000}


@pytest.fixture
def engine(tmp_path):
    with Store(str(tmp_path / "db")) as store:
        yield Engine(store, check(CATALOG))


def _explain(engine, at, contact="c1", attributes=RICH, everything=False, **context):
    d = engine.decide(Request(("call",), contact, attributes=dict(attributes), context=context or {"channel": "web"},
                              dry_run=True, explain=True, explain_all=everything, time=at))
    return {x.offer: x for x in d.spaces[0].explain}


def _propose(engine, offer, at, contact="c1"):
    """Record a decision at `at` that proposes `offer`, the best offer the attributes leave."""
    attributes = {"loan": RICH, "card": {**RICH, "segment": "young", "products": set()}, "rare": {"age": 10}}[offer]
    d = engine.decide(Request(("call",), contact, attributes=dict(attributes), context={"channel": "web"}, time=at))
    assert d.offers("call") == [offer], d.offers("call")
    return d.spaces[0].proposals[0].id


def test_the_first_clause_not_true_and_the_values_it_read(engine):
    x = _explain(engine, T, attributes={**RICH, "income": 12000})["loan"]
    assert x.kind == "eligible" and "category sales: eligible" in x.rule
    assert x.why.rule_text.startswith("eligible contact.marketing_consent and adult and contact.income")
    c = x.why.clause
    assert (c.text, c.result, c.location) == ("contact.income >= 20000", "false", "10_sales.offer:3:52")
    assert [(r.name, r.value) for r in c.reads] == [("contact.income", "12000")]


def test_an_absent_value_is_named_absent_not_false(engine):
    attributes = {k: v for k, v in RICH.items() if k != "marketing_consent"}
    c = _explain(engine, T, attributes=attributes)["loan"].why.clause
    assert (c.text, c.result) == ("contact.marketing_consent", "null")
    assert [(r.name, r.value) for r in c.reads] == [("contact.marketing_consent", None)]
    # a call with no attributes and no profile: the same, the input is missing
    c = _explain(engine, T, contact=None, attributes={})["card"].why.clause
    assert c.result == "null" and c.reads[0].value is None


def test_a_let_shows_what_it_read(engine):
    c = _explain(engine, T, attributes={**RICH, "age": 16})["card"].why.clause
    assert c.text == "adult" and c.result == "false"
    assert [(r.name, r.value) for r in c.reads] == [("adult", "false"), ("contact.age", "16")]


def test_an_or_shows_each_operand(engine):
    why = _explain(engine, T, attributes={**RICH, "segment": "affluent", "products": set()})["loan"].why
    assert why.clause.text == 'contact.segment == "mass" or "card" in contact.products'
    assert [(o.text, o.result) for o in why.operands] == [('contact.segment == "mass"', "false"),
                                                          ('"card" in contact.products', "false")]
    assert [(r.name, r.value) for r in why.operands[0].reads] == [("contact.segment", '"affluent"')]
    assert why.operands[1].reads[0].value == "[]"


def test_a_sliding_cap_frees_when_its_oldest_counted_leaves(engine):
    first = T - datetime.timedelta(days=2, microseconds=123)
    _propose(engine, "loan", first)
    _propose(engine, "loan", T - datetime.timedelta(hours=5))
    lim = _explain(engine, T)["loan"].why.limit
    assert (lim.count, lim.limit, lim.window) == (2, 2, "7d")
    assert lim.counts == "proposed of offer loan, this contact"
    assert lim.frees_at == first + datetime.timedelta(days=7)  # to the microsecond


def test_a_suppression_frees_after_the_last_event(engine):
    pid = _propose(engine, "card", T - datetime.timedelta(days=20))
    rejected = T - datetime.timedelta(days=10)
    engine.record(pid, "rejected", rejected)
    x = _explain(engine, T + datetime.timedelta(days=7))["loan"]  # the card's week is over
    assert x.kind == "suppress" and "category sales" in x.rule
    lim = x.why.limit
    assert (lim.count, lim.limit, lim.window) == (1, 1, "90d")
    assert lim.frees_at == rejected + datetime.timedelta(days=90)


def test_a_calendar_cap_frees_at_the_next_period(engine):
    _propose(engine, "card", T)
    lim = _explain(engine, T + datetime.timedelta(hours=1))["card"].why.limit
    assert (lim.count, lim.limit, lim.window) == (1, 1, "calendar week")
    # next Monday, midnight in Paris (UTC+1 in November)
    assert lim.frees_at == datetime.datetime(2026, 11, 8, 23, tzinfo=UTC)


def test_a_lifetime_total_cap_never_frees(engine):
    _propose(engine, "rare", T, contact="other")
    lim = _explain(engine, T)["rare"].why.limit
    assert (lim.count, lim.limit, lim.window, lim.frees_at) == (1, 1, "lifetime", None)
    assert lim.counts == "proposed of offer rare, all contacts"


def test_valid_dates_and_a_null_weight(engine):
    x = _explain(engine, T)["saver"]
    assert x.kind == "valid" and x.why.clause.reads[0].name == "today"
    assert x.why.clause.reads[0].value == "2026-11-04"
    x = _explain(engine, datetime.datetime(2026, 12, 2, tzinfo=UTC),
                 attributes={k: v for k, v in RICH.items() if k != "savings"})["saver"]
    assert x.kind == "weight" and x.why.clause.result == "null"
    assert [(r.name, r.value) for r in x.why.clause.reads] == [("contact.savings", None)]


def test_explain_all_shows_every_rule_that_removed_an_offer(engine):
    pid = _propose(engine, "loan", T - datetime.timedelta(days=3))
    _propose(engine, "loan", T - datetime.timedelta(days=2))
    engine.record(pid, "rejected", T - datetime.timedelta(days=1))
    x = _explain(engine, T, attributes={**RICH, "segment": "young", "products": set()}, everything=True)["loan"]
    assert x.kind == "eligible" and "offer loan: eligible" in x.rule  # the offer's own rule comes first
    assert [(a.kind, a.rule.split(": ", 1)[1]) for a in x.also] == [
        ("cap", "offer loan: cap 2 per contact per 7d"), ("suppress", "category sales: suppress 90d after rejected")]
    assert x.also[1].why.limit.count == 1
    assert not _explain(engine, T, attributes={**RICH, "segment": "young", "products": set()})["loan"].also


def test_explain_off_carries_no_why(engine):
    d = engine.decide(Request(("call",), "c1", attributes=dict(RICH), context={"channel": "web"}, dry_run=True,
                              time=T))
    assert d.spaces[0].explain is None


def test_explain_through_the_api_matches_its_golden_file(tmp_path):
    """Explain's JSON as a gateway gets it (explain_all, every kind of why), against a
    reviewed golden file: tests/fixtures/explain/call.json."""
    from google.protobuf import json_format

    from golden import FIXTURES, compare
    from offerd.client import Client
    from served import Running

    server = Running(str(tmp_path))
    try:
        with Client(server.target) as c:
            c.deploy(CATALOG, "why")
            first = c.decide(["call"], "c1", attributes=RICH, context={"channel": "web"},
                             time=T - datetime.timedelta(days=3)).spaces[0].propositions[0].id
            c.record(first, "rejected", T - datetime.timedelta(days=2))
            c.decide(["call"], "c1", attributes=RICH, context={"channel": "web"}, time=T - datetime.timedelta(days=1))
            answers = [
                c.decide(["call"], "c1", attributes={**RICH, "segment": "young", "products": []},
                         context={"channel": "web"}, time=T, dry_run=True, explain_all=True),
                c.decide(["call"], None, time=datetime.datetime(2026, 12, 24, 18, tzinfo=UTC), dry_run=True,
                         explain=True),
            ]
    finally:
        server.stop()
    text = "[\n" + ",\n".join(json_format.MessageToJson(a, indent=2, sort_keys=True) for a in answers) + "\n]\n"
    compare(FIXTURES / "explain" / "call.offer", ".json", text)


def test_clause_counts_what_why_names(engine):
    """`first_clause` (what a simulation counts) picks the clause `why` shows, without reading values."""
    from offerd.compiler.space import Moment
    from offerd.history import EMPTY

    compiled = engine.space("call")
    moment = Moment.at(T, "Europe/Paris")
    loan = compiled.offers.index(next(o for o in compiled.offers if o.name == "loan"))
    rule = next(i for i, r in enumerate(compiled.rules) if r.owner == "category sales" and r.kind == "eligible"
                and i in compiled._part("why").rules_of[loan])
    texts = compiled.clauses(rule)
    assert texts == ("contact.marketing_consent", "adult", "contact.income >= 20000", 'context.channel != "kiosk"')
    for attributes, k in (({**RICH, "income": 1}, 2), ({**RICH, "age": 3}, 1), ({}, 0)):
        args = (attributes, {"channel": "web"}, moment, EMPTY)
        assert compiled.first_clause(rule)(*args) == k
        assert compiled.why(rule, *args).clause.text == texts[k]
    cap = compiled.rules.index(next(r for r in compiled.rules if r.kind == "cap"))
    assert compiled.clauses(cap) == () and compiled.first_clause(cap) is None


def test_a_sliding_total_cap_frees_when_its_oldest_counted_leaves(tmp_path):
    """Totals have no event times to read: the free-up time is found by halving over counts,
    to the microsecond, as the contact's is from its events."""
    catalog = check({"a.offer": "schema contact { }\nschema context { }\nspace s { limit 1 }\n"
                                "offer hot { spaces s  weight 2  cap 2 total per 1d }\noffer cold { spaces s }\n"})
    first = T - datetime.timedelta(hours=20, microseconds=7)
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, catalog)
        for who, at in (("a", first), ("b", T - datetime.timedelta(hours=2))):
            assert engine.decide(Request(("s",), who, time=at)).offers("s") == ["hot"]
        d = engine.decide(Request(("s",), "c", dry_run=True, explain=True, time=T))
        lim = {x.offer: x for x in d.spaces[0].explain}["hot"].why.limit
    assert (lim.count, lim.limit, lim.window, lim.counts) == (2, 2, "1d", "proposed of offer hot, all contacts")
    assert abs((lim.frees_at - (first + datetime.timedelta(days=1))).total_seconds()) <= 1e-6


def test_values_read_are_shown_as_odl_writes_them():
    from offerd import periods
    from offerd.compiler.why import odl

    zone = periods.zone("Europe/Paris")
    assert odl(("a", None), zone) == '["a", null]'  # a list literal may hold a null
    assert odl({"b", "a"}, zone) == '["a", "b"]' and odl(frozenset(), zone) == "[]"
    assert (odl(True, zone), odl(None, zone), odl(1 / 3, zone), odl('say "hi"', zone)) == (
        "true", None, "0.333333", '"say \\"hi\\""')
    assert odl(datetime.datetime(2026, 11, 4, 9, 30, tzinfo=UTC), zone) == "2026-11-04T10:30:00+01:00"
    assert odl(datetime.date(2026, 11, 4), zone) == "2026-11-04"
    assert (odl(4e-7, zone), odl(0.0, zone), odl("a\nb\tc\\", zone)) == ("4e-07", "0.0", '"a\\nb\\tc\\\\"')


@pytest.mark.parametrize("year", [2026, 2300, 9000])
def test_a_paused_offer_never_frees_and_far_future_times_end(tmp_path, year):
    """`cap 0` never frees; a full sliding total in year 9000 (floats coarser than a
    microsecond there) is found in bounded time, within a few microseconds."""
    catalog = check({"a.offer": "schema contact { }\nschema context { }\nspace s { limit 1 }\n"
                                "offer hot { spaces s  weight 2  cap 1 total per 7d }\n"
                                "offer off { spaces s  weight 3  cap 0 per contact per 1d }\noffer cold { spaces s }\n"})
    at = T.replace(year=year)
    with Store(str(tmp_path / "db")) as store:
        engine = Engine(store, catalog)
        assert engine.decide(Request(("s",), "a", time=at - datetime.timedelta(days=1))).offers("s") == ["hot"]
        d = engine.decide(Request(("s",), "b", dry_run=True, explain=True, time=at))
    got = {x.offer: x.why.limit for x in d.spaces[0].explain if x.why}
    assert (got["off"].count, got["off"].limit, got["off"].frees_at) == (0, 0, None)
    assert abs((got["hot"].frees_at - (at + datetime.timedelta(days=6))).total_seconds()) < 1e-3


def test_texts_are_cut_by_the_lines_the_parser_counts():
    """Only a newline ends a line, for the parser and so for the texts explain quotes: a
    line separator pasted into content, or a form feed in a comment, shifts nothing."""
    source = ('schema contact { a: int  b: int }\nschema context { }\nspace s { limit 1 }\n'
              'offer p { spaces s  content s { t "line\u2028break\x0cpage" } }  # \r a comment\n'
              'offer o { spaces s  weight 1\n  eligible contact.a > 5 and\n    contact.b > 1 }\n')
    catalog = check({"a.offer": source})
    rule = catalog.offers_by_name["o"].eligible[0]
    assert catalog.text(rule.rule.span) == "eligible contact.a > 5 and contact.b > 1"
    assert catalog.text(rule.expr.right.span) == "contact.b > 1"


def test_a_bracketed_clause_is_quoted_with_its_brackets():
    catalog = check({"a.offer": "schema contact { a: int  b: int }\nschema context { }\nspace s { limit 1 }\n"
                                "offer o { spaces s\n  eligible not (contact.a > 1 and contact.b > 2) and "
                                "(contact.a + 1) * 2 > 50 and (contact.b > 1) }\n"})
    from offerd.compiler import SpaceCache, compile_space

    space = compile_space(catalog, "s", SpaceCache())
    rule = next(i for i, r in enumerate(space.rules) if r.kind == "eligible")
    assert space.clauses(rule) == ("not (contact.a > 1 and contact.b > 2)", "(contact.a + 1) * 2 > 50",
                                   "(contact.b > 1)")


def test_lets_of_lets_are_read_once_each():
    """Twenty levels of lets, each reading the one below twice: explained at once (each let
    expanded once, not 2^20 times), every input named once."""
    lets = "let l0 = contact.a > 1\n" + "".join(f"let l{i} = l{i - 1} and not l{i - 1}\n" for i in range(1, 21))
    catalog = check({"a.offer": "schema contact { a: int }\nschema context { }\n" + lets
                                + "space s { limit 1 }\noffer o { spaces s  eligible l20 }\n"})
    from offerd.compiler import Moment, SpaceCache, compile_space
    from offerd.history import EMPTY

    space = compile_space(catalog, "s", SpaceCache())
    rule = next(i for i, r in enumerate(space.rules) if r.kind == "eligible")
    why = space.why(rule, {"a": 5}, {}, Moment.at(T), EMPTY)
    assert [r.name for r in why.clause.reads] == [f"l{i}" for i in range(20, -1, -1)] + ["contact.a"]
