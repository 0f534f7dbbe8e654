"""Property tests: compiled ODL agrees with the reference interpreter (tests/reference.py).

A type-directed Hypothesis strategy (tests/strategies.py) writes random well-typed ODL expressions (every
operator and function, nulls everywhere); each is compiled and run against random
contacts, contexts, decision times and histories, and must give what the reference gives.
A second strategy writes whole catalogs (random eligible rules, weights, caps, validity)
and checks a compiled space's `evaluate` and `explain` against `reference.explain_offer`.
"""
from __future__ import annotations

import datetime
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offerd import lang
from offerd.compiler import Moment, SpaceCache, compile_expression, compile_space
from offerd.history import MemoryHistory, Proposition
from offerd.lang import nodes as n
from offerd.lang.values import check_attributes

import reference  # tests/reference.py
from strategies import (CATALOG, CATEGORIES, CHAINS, FAST, PYTHON_TYPES, SCALE, SCHEMAS, TIMEZONE, Gen,
                        bool_expressions, describe, environments, expressions, run, same, walk)

# --- expressions ------------------------------------------------------------------------------


@FAST
@given(text=expressions, envs=st.lists(environments(), min_size=1, max_size=6))
def test_compiled_value_matches_reference(text, envs):
    compiled = compile_expression(CATALOG, text, offer="promo")
    for contact, context, moment, history in envs:
        expected = reference.evaluate(compiled.expr, contact, context, moment, history, CATALOG.lets)
        where = describe(f"expression: {text}", contact, context, moment, history)
        actual = run(compiled.value, "value", where, contact, context, moment, history)
        assert same(actual, expected), f"value {actual!r}, reference {expected!r}" + where


@FAST
@given(text=bool_expressions, envs=st.lists(environments(), min_size=1, max_size=6))
def test_compiled_truth_and_falsity_match_reference(text, envs):
    compiled = compile_expression(CATALOG, text, offer="promo")
    for contact, context, moment, history in envs:
        expected = reference.evaluate(compiled.expr, contact, context, moment, history, CATALOG.lets)
        where = describe(f"expression: {text}", contact, context, moment, history)
        truth = run(compiled.truth, "truth", where, contact, context, moment, history)
        assert truth is (expected is True), f"truth {truth!r}, reference {expected!r}" + where
        falsity = run(compiled.falsity, "falsity", where, contact, context, moment, history)
        assert falsity is (expected is False), f"falsity {falsity!r}, reference {expected!r}" + where


@settings(max_examples=250 * SCALE, deadline=None, report_multiple_bugs=False)
@given(text=expressions, envs=st.lists(environments(), min_size=1, max_size=4))
def test_checked_type_and_nullability_hold_for_every_subexpression(text, envs):
    """The checker's `type` and `nullable` are promises the code generator relies on: a
    node that is not nullable never evaluates to null, and values have the node's type."""
    expr = lang.check_expression(CATALOG, text, offer="promo")
    for contact, context, moment, history in envs:
        for node in walk(expr):
            if node.type.name not in PYTHON_TYPES:
                continue
            value = reference.evaluate(node, contact, context, moment, history, CATALOG.lets)
            where = f"\nnode: {node!r}" + describe(f"expression: {text}", contact, context, moment, history)
            if value is None:
                assert node.nullable, "null from a node the checker says is never null" + where
            else:
                assert type(value) is PYTHON_TYPES[node.type.name], f"{value!r} is not a {node.type}" + where


def blake_bucket(text: str, count: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % count


# Pinned cases: each documented decision once, against the reference and the compiled code.
# The decision time is 2026-10-02 (Europe/Paris); the history is empty.
PINNED = [
    # arithmetic: floored %, true /, null on division by zero and on int * overflow
    ("7 % -2", {}, -1),
    ("-7 % 2", {}, 1),
    ("7.5 % 2", {}, 1.5),
    ("7 / 2", {}, 3.5),
    ("4 / 2", {}, 2.0),
    ("1 / 0", {}, None),
    ("1.5 / 0.0", {}, None),
    ("1.5 / -0.0", {}, None),
    ("5 % 0", {}, None),
    ("contact.a / 0", {"a": 3}, None),
    ("contact.a + 1", {}, None),
    ("-contact.a", {}, None),
    ("contact.a * 2", {"a": 2**62}, None),
    ("contact.a * 2", {"a": -(2**62)}, None),  # -2**63 is outside [-(2**63-1), 2**63-1]
    ("contact.a * 2", {"a": 2**61}, 2**62),
    ("contact.a * -1", {"a": -(2**63)}, None),
    ("9223372036854775807 * 2", {}, None),
    ("(9223372036854775807 * 2) > 0", {}, None),
    ("(2 * 4611686018427387904) == 1", {}, None),
    ("(9223372036854775807 * 2) ?? 5", {}, 5),
    ("contact.f * 2", {"f": 2.0**62}, 2.0**63),  # float * is not bounded
    ("contact.s + \"!\"", {"s": "hi"}, "hi!"),
    # int widens to float wherever it meets one
    ("if contact.flag then 1 else 2.5", {"flag": True}, 1.0),
    ("contact.a ?? 1.5", {"a": 3}, 3.0),
    ("contact.f ?? 0", {}, 0.0),
    ("min(1, 2.5)", {}, 1.0),
    ("max(contact.a, contact.f)", {"a": 3, "f": 2.5}, 3.0),
    ("1 + 2.0", {}, 3.0),
    # comparisons and membership with nulls
    ("contact.a == 1", {}, None),
    ("contact.a in [1, 2]", {}, None),
    ("contact.a in contact.nums", {"nums": []}, None),
    ("3 in contact.nums", {"nums": []}, False),
    ("1 in [1, contact.a]", {}, True),
    ("2 in [1, contact.a]", {}, None),
    ("2 not in [1, contact.a]", {}, None),
    ("2 in [1, contact.a]", {"a": 3}, False),
    ("contact.s in picks", {}, None),  # picks = ["a", "b", contact.s]
    ("contact.s not in picks", {}, None),
    ("\"z\" in picks", {}, None),
    ("\"a\" in picks", {}, True),
    ("\"z\" not in picks", {"s": "y"}, True),
    ("0 in (contact.nums ?? [contact.a])", {}, None),
    ("\"b\" in contact.s", {"s": "abc"}, True),
    ("\"\" in contact.s", {"s": ""}, True),
    ("\"b\" in contact.tags", {}, None),
    ("\"b\" in contact.tags", {"tags": set()}, False),
    ("\"b\" not in contact.tags", {"tags": {"b"}}, False),
    # Kleene logic, if/then/else like SQL CASE
    ("contact.flag and false", {}, False),
    ("contact.flag or true", {}, True),
    ("contact.flag and true", {}, None),
    ("not contact.flag", {}, None),
    ("contact.flag == true", {}, None),
    ("if contact.flag then 1 else 2", {}, 2),
    ("if not contact.flag then 1 else 2", {}, 2),
    # functions
    ("has(contact.a)", {"a": 0}, True),
    ("has(contact.a)", {}, False),
    ("has(contact.s)", {"s": ""}, True),
    ("len(contact.s)", {}, None),
    ("len(contact.tags)", {"tags": ["a", "a", "b"]}, 2),
    ("upper(contact.s)", {"s": "ß"}, "SS"),
    ("starts_with(contact.s, \"\")", {"s": "x"}, True),
    ("abs(contact.f)", {"f": -2.5}, 2.5),
    ("days_since(2026-11-01)", {}, -30),
    ("days_until(2026-11-01)", {}, 30),
    ("days_since(contact.d)", {}, None),
    ("bucket(\"abc\", 100)", {}, blake_bucket("abc", 100)),
    ("bucket(contact.a, 10)", {"a": -5}, blake_bucket("-5", 10)),
    ("bucket(contact.a, 0)", {"a": 5}, None),
    ("bucket(contact.a, -3)", {"a": 5}, None),
    ("bucket(contact.s, 10)", {}, None),
]


@pytest.mark.parametrize("text, contact, expected", PINNED, ids=[f"{t} {c}" for t, c, _ in PINNED])
def test_documented_decision(text, contact, expected):
    moment = Moment.at(datetime.datetime(2026, 10, 2, 12, tzinfo=datetime.timezone.utc), TIMEZONE)
    history = MemoryHistory().view(None)
    contact = check_attributes(CATALOG.contact, contact, "contact")
    compiled = compile_expression(CATALOG, text)
    ref = reference.evaluate(compiled.expr, contact, {}, moment, history, CATALOG.lets)
    assert same(ref, expected), f"reference gives {ref!r}"
    actual = compiled.value(contact, {}, moment, history)
    assert same(actual, expected), f"compiled value is {actual!r}"
    if compiled.expr.type.name == "bool":
        assert compiled.truth(contact, {}, moment, history) is (expected is True), "compiled truth"
        assert compiled.falsity(contact, {}, moment, history) is (expected is False), "compiled falsity"


def test_history_counts_window_and_scope():
    when = datetime.datetime(2026, 10, 2, 12, tzinfo=datetime.timezone.utc)
    moment = Moment.at(when, TIMEZONE)
    day = 86400
    history = MemoryHistory([
        Proposition("c1", "promo", "web", CHAINS["promo"], moment.ts - 2 * day, {"accepted": moment.ts - day}),
        Proposition("c1", "promo", "web", CHAINS["promo"], moment.ts - 10 * day),
        Proposition("c2", "card", "web", CHAINS["card"], moment.ts - day, {"rejected": moment.ts - 3600}),
        Proposition("c1", "card", "web", CHAINS["card"], moment.ts + 60),  # after the decision
        Proposition("c1", "hello", "web", (), moment.ts - 7 * day),  # exactly 7d ago: out of 7d
    ]).view("c1")
    cases = {"proposed(promo, 7d)": 1, "proposed(promo, 30d)": 2, "presented(promo, 7d)": 1,
             "accepted(loyalty.upsell, 30d)": 1, "proposed(loyalty, 30d)": 2, "rejected(card, 7d)": 0,
             "proposed(card, 7d)": 0, "proposed(hello, 7d)": 0, "proposed(hello, 8d)": 1,
             "propensity": 0.5}
    for text, expected in cases.items():
        compiled = compile_expression(CATALOG, text, offer="card")
        assert reference.evaluate(compiled.expr, {}, {}, moment, history, CATALOG.lets) == expected, text
        assert compiled.value({}, {}, moment, history) == expected, text


def test_compiling_an_expression_gives_no_syntax_warning():
    """compile_expression also builds truth/falsity for a number; Python must not warn."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_expression(CATALOG, "7 % 2")
    assert [str(w.message) for w in caught] == []


# --- whole spaces -----------------------------------------------------------------------------

SPACE_OFFERS = ("o1", "o2", "o3", "o4", "fb")
SPACE_CHAINS = {"": (), "loyalty": ("loyalty",), "loyalty.upsell": ("loyalty", "loyalty.upsell")}
GROUPS = ("g1", "g2")
CATEGORY_RULES = Gen(propensity=False, refs=SPACE_OFFERS + CATEGORIES + GROUPS)
OFFER_RULES = Gen(propensity=True, refs=SPACE_OFFERS + CATEGORIES + GROUPS)


def limits(owner_is_space: bool = False):
    status = st.sampled_from(("", "proposed ", "presented ", "accepted ", "rejected "))
    window = st.sampled_from(("", " per 1d", " per 7d", " per 30d", " per 12h", " per calendar day",
                              " per calendar week", " per calendar month"))
    cap = st.builds(lambda k, s, scope, w: f"cap {k} {s}{scope}{w}", st.integers(0, 3), status,
                    st.sampled_from(("per contact", "total")), window)
    if owner_is_space:
        return cap
    suppress = st.builds(lambda d, s: f"suppress {d} after {s}", st.sampled_from(("1d", "7d", "30d", "2h")),
                         st.sampled_from(("proposed", "presented", "accepted", "rejected")))
    return st.one_of(cap, suppress)


@st.composite
def space_catalogs(draw):
    depth = 3
    lines = [SCHEMAS]
    rule = st.one_of(st.just("true"), CATEGORY_RULES.expr("bool", depth))
    lines.append("space web { channel inbound  limit 3  fallback fb  "
                 + "  ".join(draw(st.lists(limits(True), max_size=2))
                             + draw(st.lists(rule.map(lambda x: f"eligible {x}"), max_size=1))) + " }")
    lines.append("space mail { channel outbound  limit 1  "
                 + "  ".join(draw(st.lists(rule.map(lambda x: f"eligible {x}"), max_size=1))) + " }")
    for kind, owners in (("category", CATEGORIES), ("group", GROUPS)):
        for owner in owners:
            items = draw(st.lists(rule.map(lambda x: f"eligible {x}"), max_size=1))
            items += draw(st.lists(st.tuples(st.sampled_from(("web", "mail")), rule).map(
                lambda x: f"eligible in {x[0]}: {x[1]}"), max_size=2))
            items += draw(st.lists(limits(), max_size=2))
            lines.append(f"{kind} {owner} {{\n  " + "\n  ".join(items) + "\n}")
    for name in SPACE_OFFERS:
        items = []
        category = draw(st.sampled_from(sorted(SPACE_CHAINS)))
        if category:
            items.append(f"category {category}")
        groups = draw(st.lists(st.sampled_from(GROUPS), unique=True, max_size=2))
        if groups:
            items.append("groups " + ", ".join(groups))
        items.append("spaces web, mail" if draw(st.booleans()) or name == "fb" else "spaces web")
        both = "mail" in items[-1]
        if draw(st.integers(0, 3)) == 0:  # decision times are in 2026
            start = draw(st.dates(datetime.date(2025, 10, 1), datetime.date(2026, 12, 31)))
            end = start + datetime.timedelta(days=draw(st.integers(0, 400)))
            items.append(f"valid {start} to {end}")
        rule = st.one_of(st.just("true"), OFFER_RULES.expr("bool", depth))  # let some offers through
        items += [f"eligible {x}" for x in draw(st.lists(rule, max_size=2))]
        items += [f"eligible in web: {x}" for x in draw(st.lists(rule, max_size=1))]
        if both:
            items += [f"eligible in mail: {x}" for x in draw(st.lists(rule, max_size=1))]
        weight = OFFER_RULES.num(depth)
        if draw(st.integers(0, 4)):  # else the default weight 0
            items.append(f"weight {draw(weight)}")
        if draw(st.booleans()):
            items.append(f"weight in web: {draw(weight)}")
        if both and draw(st.booleans()):
            items.append(f"weight in mail: {draw(weight)}")
        items += draw(st.lists(limits(), max_size=3))
        lines.append(f"offer {name} {{\n  " + "\n  ".join(items) + "\n}")
    return "\n".join(lines)




def _same_why(catalog, space, compiled, outcome, args, where) -> None:
    """`why` names the first conjunct the reference finds not true, with its result, and
    `failing` every rule the reference finds removing the offer."""
    pos = compiled.offers.index(outcome.offer)
    assert [compiled.rules[i] for i in compiled.failing(pos, *args)] == reference.removing_rules(
        catalog, space, outcome.offer, *args), f"{outcome.offer.name}: failing rules differ" + where
    why = compiled.why(outcome.index, *args)
    rule = outcome.rule
    if rule.kind in ("valid", "cap", "suppress"):
        return  # no clauses: a date range, or a count (its limit is tested on a store)
    checks = [k for k in catalog.checks(outcome.offer, space) if k.rule == rule]
    expr = checks[0].expr if checks else outcome.offer.weight_in.get(space, outcome.offer.weight).expr

    def conjuncts(e):
        return conjuncts(e.left) + conjuncts(e.right) if isinstance(e, n.Binary) and e.op == "and" else [e]

    for part in conjuncts(expr):
        value = reference.evaluate(part, *args, catalog.lets, space)
        if (value is not None) if rule.kind == "weight" else (value is True):
            continue
        expected = (catalog.text(part.span), "null" if value is None else "false")
        assert (why.clause.text, why.clause.result) == expected, (
            f"{outcome.offer.name}: why {why.clause}, reference {catalog.text(part.span)} = {value!r}" + where)
        return
    raise AssertionError(f"{outcome.offer.name}: the reference finds {rule} true" + where)


@settings(max_examples=200 * SCALE, deadline=None, report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(source=space_catalogs(), data=st.data())
def test_compiled_space_matches_reference(source, data):
    catalog = lang.check({"s.offer": source})
    # propositions carry their offer's category chain, as the server records them
    chains = {o.name: o.chain for o in catalog.offers}
    groups = {o.name: o.groups for o in catalog.offers}
    env = environments(catalog.contact, catalog.context, offers=SPACE_OFFERS, chains=chains, spaces=("web", "mail"),
                       groups=groups)
    envs = data.draw(st.lists(env, min_size=1, max_size=4))
    cache = SpaceCache()
    for space in ("web", "mail"):
        compiled = compile_space(catalog, space, cache)
        offers = catalog.offers_in(space)
        assert [o.name for o in compiled.offers] == [o.name for o in offers]
        for contact, context, moment, history in envs:
            where = describe(f"space: {space}", contact, context, moment, history) + "\n" + source
            expected = [reference.explain_offer(catalog, space, o, contact, context, moment, history)
                        for o in offers]
            outcomes = run(compiled.explain, "explain", where, contact, context, moment, history)
            assert len(outcomes) == len(offers)
            for offer, outcome, (verdict, detail) in zip(offers, outcomes, expected):
                assert outcome.offer.name == offer.name
                if verdict == "eligible":
                    assert outcome.eligible and same(outcome.weight, detail), (
                        f"{offer.name}: explain {outcome}, reference weight {detail!r}" + where)
                else:
                    assert not outcome.eligible and outcome.rule == detail, (
                        f"{offer.name}: explain says {outcome.rule or 'eligible'}, reference says removed by {detail}"
                        + where)
                    _same_why(catalog, space, compiled, outcome, (contact, context, moment, history), where)
            fast = run(compiled.evaluate, "evaluate", where, contact, context, moment, history)
            want = [(pos, w) for pos, (verdict, w) in enumerate(expected) if verdict == "eligible"]
            assert [p for p, _ in fast] == [p for p, _ in want], f"evaluate {fast}, reference {want}" + where
            for (_, got), (_, w) in zip(fast, want):
                assert same(got, w), f"evaluate {fast}, reference {want}" + where


def test_null_rules_fail_closed_in_a_space():
    """Two rules that are null for this contact (an int * overflow on a history count, and a
    let list holding a null) remove their offers; nothing raises."""
    catalog = lang.check({"s.offer": SCHEMAS + """
space web { limit 3 }
offer a { spaces web  eligible proposed(a, 30d) * 4611686018427387904 < 5  weight 1 }
offer b { spaces web  eligible contact.s in picks  weight 2 }
offer c { spaces web  weight 3 }
"""})
    moment = Moment.at(datetime.datetime(2026, 10, 2, 12, tzinfo=datetime.timezone.utc), TIMEZONE)
    history = MemoryHistory([Proposition("c1", "a", "web", (), moment.ts - 3600 * k) for k in (1, 2)]).view("c1")
    compiled = compile_space(catalog, "web", SpaceCache())
    expected = [reference.explain_offer(catalog, "web", o, {}, {}, moment, history) for o in compiled.offers]
    assert [verdict for verdict, _ in expected] == ["removed", "removed", "eligible"]
    assert run(compiled.evaluate, "evaluate", "", {}, {}, moment, history) == [(2, 3)]
    outcomes = run(compiled.explain, "explain", "", {}, {}, moment, history)
    assert [(o.eligible, o.rule) for o in outcomes] == [(False, expected[0][1]), (False, expected[1][1]), (True, None)]
