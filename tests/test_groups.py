"""Groups, a space's own eligible rule, a category's or group's rule for one space, and caps
per decision: the engine on a real store (explain naming each rule, group counts in history
functions and totals), the store's records with and without groups, and the simulation."""
from __future__ import annotations

import datetime

import pytest

from offerd.domain import NewProposition
from offerd.engine import Engine, Request
from offerd.lang import check
from offerd.offline import simulate
from offerd.offline.population import Row
from offerd.store import Contact, Store
from offerd.store.keys import history_key, us
from offerd.store.records import Indexer, Record, encode_new, names

T = datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.timezone.utc)
SOURCE = """
schema contact { age: int  opt_in_sms: bool }
schema context { }
space web { limit 3 }
space sms { channel outbound  limit 2  eligible contact.opt_in_sms ?? false }
category sales { eligible in sms: contact.age >= 21 }
group loans { cap 1 per decision  eligible in sms: contact.age >= 25  cap 3 total per 1d }
group big { eligible contact.age >= 30 }
offer loan_a { groups loans  spaces web, sms  weight 9 }
offer loan_b { groups loans, big  spaces web, sms  weight 8 }
offer card { category sales  spaces web, sms  weight 5  eligible proposed(loans, 30d) < 2 }
offer other { spaces web, sms  weight 1 }
"""


@pytest.fixture
def engine(tmp_path):
    store = Store(str(tmp_path / "db"))
    yield Engine(store, check({"00.offer": SOURCE}))
    store.close()


def decide(engine, who, spaces, attrs, minutes=0, explain=False, dry=False):
    return engine.decide(Request(tuple(spaces), who, attributes=attrs, explain=explain, dry_run=dry,
                                 time=T + datetime.timedelta(minutes=minutes)))


def explained(decision, space):
    (result,) = [r for r in decision.spaces if r.space == space]
    return {e.offer: (e.kind, e.rule) for e in result.explain}


def test_explain_names_each_rule_with_its_owner(engine):
    d = decide(engine, "ann", ["sms"], {"age": 30}, explain=True, dry=True)
    got = explained(d, "sms")
    assert {kind for kind, _ in got.values()} == {"eligible"}
    assert all(rule.endswith("space sms: eligible") and ":5:" in rule for _, rule in got.values())

    d = decide(engine, "bob", ["sms"], {"age": 22, "opt_in_sms": True}, explain=True, dry=True)
    got = explained(d, "sms")
    assert got["loan_a"][1].endswith("group loans: eligible in sms")
    assert got["loan_b"][1].endswith("group loans: eligible in sms")  # loans is listed before big
    assert got["card"][0] == "won" and got["other"][0] == "won"

    d = decide(engine, "cid", ["sms"], {"age": 18, "opt_in_sms": True}, explain=True, dry=True)
    assert explained(d, "sms")["card"][1].endswith("category sales: eligible in sms")

    d = decide(engine, "dan", ["web"], {"age": 26}, explain=True, dry=True)
    got = explained(d, "web")
    assert got["loan_b"][1].endswith("group big: eligible")
    assert got["loan_a"][0] == "won"


def test_a_cap_per_decision_holds_across_the_spaces_of_one_call(engine):
    d = decide(engine, "eve", ["web", "sms"], {"age": 40, "opt_in_sms": True}, explain=True)
    assert d.offers("web") == ["loan_a", "card", "other"]
    assert d.offers("sms") == []  # loan_b: the loans cap; the rest were proposed in web
    kind, rule = explained(d, "web")["loan_b"]
    assert kind == "cap in decision" and rule.endswith("group loans: cap 1 per decision")
    # a new call is a new answer: loan_b may come again, loan_a already counts one loan
    d = decide(engine, "eve", ["sms"], {"age": 40, "opt_in_sms": True}, minutes=1)
    assert d.offers("sms") == ["loan_a", "card"]


def test_history_functions_and_totals_count_every_offer_of_a_group(engine):
    # card needs fewer than 2 loans of any offer in the group: gone on the third decision
    for minute, want in enumerate((["loan_a", "card", "other"], ["loan_a", "card", "other"], ["loan_a", "other"])):
        assert decide(engine, "fay", ["web"], {"age": 40}, minutes=minute).offers("web") == want
    d = decide(engine, "fay", ["web"], {"age": 40}, minutes=3, explain=True)
    # the loans total (3 a day, any offer of the group) is full, and fay had 3 loans: no card
    assert d.offers("web") == ["other"]
    got = explained(d, "web")
    assert got["card"][1].endswith("offer card: eligible")
    assert got["loan_a"][1].endswith("group loans: cap 3 total per 1d")
    until = (T + datetime.timedelta(minutes=4)).timestamp()
    assert engine.store.total("group", "loans", "proposed", None, until) == 3
    (loan,) = [r for r in engine.store.read_history(Contact("fay")) if r.offer == "loan_a"][:1]
    assert loan.groups == ("loans",) and loan.categories == ()


def test_status_reports_count_toward_the_group(engine):
    d = decide(engine, "gus", ["web"], {"age": 40})
    pid = d.spaces[0].proposals[0].id
    assert engine.record(pid, "accepted", T + datetime.timedelta(minutes=1))
    until = (T + datetime.timedelta(minutes=2)).timestamp()
    for status in ("presented", "accepted"):
        assert engine.store.total("group", "loans", status, None, until) == 1


def test_records_without_groups_still_decode_and_count(tmp_path):
    """A record written before groups existed (a names block of offer, space, categories)
    reads as before: no groups; a record with groups keeps its categories apart."""
    old_block = b"".join(bytes((len(x),)) + x for x in (b"o", b"web", b"loyalty", b"loyalty.gold"))
    assert names("o", "web", ("loyalty", "loyalty.gold")) == old_block
    pid = bytes(16)
    old = Record.decode(encode_new(us(1.79e9), old_block, b"c1", pid))
    assert (old.offer, old.space, old.categories, old.groups) == ("o", "web", ("loyalty", "loyalty.gold"), ())
    new = Record(pid, b"c1", "o", "web", ("loyalty",), us(1.79e9), {}, ("loans", "big"))
    back = Record.decode(new.encode())
    assert (back.categories, back.groups) == (("loyalty",), ("loans", "big"))
    index = Indexer().index([new.encode(), encode_new(us(1.79e9) + 1, old_block, b"c1", pid)])
    assert index[("group", "loans", "proposed")] == [us(1.79e9)]
    assert index[("category", "loyalty", "proposed")] == [us(1.79e9), us(1.79e9) + 1]
    assert ("category", "+loans", "proposed") not in index

    # an old record in a real store: read back, and reported on, as before
    with Store(str(tmp_path / "db")) as store:
        contact = Contact("c1")
        (pid,) = store.record_decision(contact, 1.79e9, [NewProposition("o", "web", ("loyalty",), (), ("loans",))])
        hkey = history_key(contact.key(), us(1.79e9), pid)
        block = b"".join(bytes((len(x),)) + x for x in (b"o", b"web", b"loyalty"))
        store.submit(lambda txn: txn.put(hkey, encode_new(us(1.79e9), block, contact.key(), pid),
                                         db=store.db["history"])).result()
        (rec,) = store.read_history(contact)
        assert rec.categories == ("loyalty",) and rec.groups == ()
        assert store.report(pid, "accepted", 1.79e9 + 1)
        assert store.total("category", "loyalty", "accepted", None, 1.79e9 + 2) == 1
        assert store.total("group", "loans", "accepted", None, 1.79e9 + 2) == 0


def test_simulation_counts_space_rules_group_caps_and_caps_per_decision():
    catalog = check({"00.offer": SOURCE})
    rows = [Row(i + 1, f"p{i}", {"age": 40, "opt_in_sms": i % 2 == 0}) for i in range(6)]
    at = T
    r = simulate.simulate(catalog, ["web", "sms"], rows, at, workers=1).to_json()
    web, sms = r["spaces"]["web"], r["spaces"]["sms"]
    # the space's own rule removed every offer for the 3 contacts without opt-in
    for offer in ("loan_a", "loan_b", "card", "other"):
        assert sum(n for rule, n in sms["offers"][offer]["eliminated"].items()
                   if rule.endswith("space sms: eligible")) == 3
    # loans: 3 a day in all; loan_b never beside loan_a (cap 1 per decision)
    assert web["offers"]["loan_a"]["proposed"] == 3
    assert web["offers"]["loan_b"]["proposed"] == 0
    caps = {rule.split(": ", 1)[1]: v["refused"] for rule, v in web["caps"].items()}
    assert caps == {"group loans: cap 1 per decision": 3, "group loans: cap 3 total per 1d": 3 + 3}


def test_a_cluster_counts_a_group_total_under_its_own_head():
    from offerd.engine.plan import Plan

    catalog = check({"00.offer": SOURCE})
    plan = Plan(catalog, shared=True)
    offer = catalog.offers_by_name["loan_b"]
    checks, heads = plan.shared_caps(offer, "web")
    assert checks == (("group:loans", 86400 * 10**6, 3),)
    assert "group:loans" in heads and plan.shared_heads == {"group:loans": 86400 * 10**6}
    assert plan.proposition(offer, "web").counted[-2:] == [("group", "loans"), ("group", "big")]
    assert not plan.proposition(offer, "web").checks  # the shared count checks the total
