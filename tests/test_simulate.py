"""Simulation over a population: a report checked against a population worked out by hand,
bad rows reported with their line numbers and skipped, the same report on one core and on
all, and the command line end to end."""
import datetime
import json
import os
import subprocess
import sys

import pytest

from offerd import lang
from offerd.offline import population, simulate

AT = datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)
CATALOG = """\
schema contact { age: int  country: string }
schema context { }
space web { limit 2  fallback f }
offer a { spaces web  weight 10  eligible contact.age >= 18  cap 3 total }
offer b { spaces web  weight 5  eligible contact.country == "FR" }
offer c { spaces web  weight 1  eligible contact.country == "DE" }
offer f { spaces web }
"""
ROWS = [
    '{"id": "p1", "age": 30, "country": "FR"}',  # a, b
    '{"id": "p2", "age": 40}',  # a
    '{"id": "p3", "age": "old"}',  # bad: a string for an int
    'not json',  # bad
    '{"id": "p5", "age": 20, "country": "FR"}',  # a (the third: the cap is full), b
    '{"id": "p6", "age": 25, "country": "DE"}',  # a refused by the cap: c
    '{"id": "p7", "age": 10, "country": "FR"}',  # b
    '{"age": 5}',  # bad: no id
    '{"id": "p9", "age": 12}',  # nothing eligible: the fallback
]


@pytest.fixture
def catalog():
    return lang.check({"c.offer": CATALOG})


@pytest.fixture
def people(tmp_path):
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(ROWS) + "\n")
    return str(path)


def run(catalog, path, **kw):
    return simulate.simulate(catalog, ["web"], population.read(path, catalog), AT, **kw).to_json()


def test_the_report_matches_the_population_worked_out_by_hand(catalog, people):
    r = run(catalog, people, workers=1)
    assert r["contacts"] == 6 and r["bad_rows"] == 3
    assert [b.split(":")[0] for b in r["bad_row_examples"]] == ["line 3", "line 4", "line 8"]
    assert "contact.age" in r["bad_row_examples"][0] and "id" in r["bad_row_examples"][2]
    web = r["spaces"]["web"]
    assert web["ranks"] == [{"a": 3, "b": 1, "c": 1}, {"b": 2}]
    assert web["rank_shares"][1] == {"b": pytest.approx(2 / 6)}
    assert web["fallback_only"] == 1 and web["nothing"] == 0
    a, b, c = (web["offers"][k] for k in "abc")
    assert (a["proposed"], a["eligible"], a["refused_by_caps_in_run"]) == (3, 4, 1)
    assert (b["proposed"], b["eligible"], c["proposed"], c["eligible"]) == (3, 3, 1, 1)
    assert sum(a["eliminated"].values()) == 2 and sum(b["eliminated"].values()) == 3
    assert all("eligible" in rule for rule in a["eliminated"])
    assert a["share"] == pytest.approx(0.5)
    (cap, bound), = web["caps"].items()
    assert "cap 3 total" in cap and bound == {"offer": "a", "first_bound_line": 6, "refused": 1}
    assert a["weight"]["min"] == a["weight"]["max"] == 10


def test_rows_parsed_by_the_workers_give_the_same_report(catalog, people):
    """Given the file's path, JSON Lines are parsed in the worker processes."""
    other = lang.check({"c.offer": CATALOG.replace("weight 5", "weight 50")})
    typed = run(catalog, people, workers=1, compare=other)
    raw = simulate.simulate(catalog, ["web"], people, AT, workers=2, compare=other).to_json()
    for r in (typed, raw, typed["compare"]["report"], raw["compare"]["report"]):
        del r["seconds"], r["contacts_per_second"], r["workers"]
    assert raw == typed
    web = typed["compare"]["spaces"]["web"]
    assert web["contacts_changed"] == web["only_reordered"] == 2  # p1, p5: b now outweighs a


def test_caps_can_be_ignored(catalog, people):
    web = run(catalog, people, workers=1, caps=False)["spaces"]["web"]
    assert web["offers"]["a"]["proposed"] == 4 and web["caps"] == {}
    assert web["ranks"][0]["a"] == 4 and web["ranks"][1] == {"b": 2, "c": 1}


def test_csv_rows_are_typed_and_bad_ones_skipped(catalog, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("id,age,country\np1,30,FR\np2,abc,FR\np3,19,DE,extra\np4,,FR\n")
    r = run(catalog, str(path), workers=1)
    assert r["contacts"] == 2 and r["bad_rows"] == 2
    assert r["bad_row_examples"][0].startswith("line 3: contact.age") and "more fields" in r["bad_row_examples"][1]
    assert r["spaces"]["web"]["ranks"][0] == {"a": 1, "b": 1}  # p4 has no age: b alone


def test_all_cores_give_the_report_of_one(tmp_path):
    catalog = lang.load(os.path.join(os.path.dirname(lang.__file__), "..", "examples", "catalog"))
    path = tmp_path / "pop.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in population.generate(catalog, 3000, seed=4)))
    spaces = sorted(catalog.spaces)
    ctx = {"page": "cart", "device": "mobile"} if "page" in catalog.context else {}
    ctx = {k: v for k, v in ctx.items() if k in catalog.context}

    def report(workers):
        source = population.read(str(path), catalog) if workers == 1 else str(path)  # typed here, or by the workers
        r = simulate.simulate(catalog, spaces, source, AT, workers=workers, context=ctx).to_json()
        return {k: v for k, v in r.items() if k not in ("seconds", "contacts_per_second", "workers")}

    one, two = report(1), report(2)
    assert one == two
    assert one["contacts"] == 3000
    if len(spaces) > 1:  # offers proposed in an earlier space are counted, not lost
        assert all(o["proposed"] + o["proposed_in_an_earlier_space"] + o["refused_by_caps_in_run"] <= o["eligible"]
                   for s in one["spaces"].values() for o in s["offers"].values())
    assert any(o["proposed"] for s in one["spaces"].values() for o in s["offers"].values())


def test_generated_populations_are_seeded(catalog):
    first = list(population.generate(catalog, 50, seed=7))
    assert first == list(population.generate(catalog, 50, seed=7))
    assert first != list(population.generate(catalog, 50, seed=8))
    assert {"FR", "DE"} & {r.get("country") for r in first}  # values from the rules' own literals


def test_command_line_simulates_and_writes_json(tmp_path, people):
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "c.offer").write_text(CATALOG)
    out = tmp_path / "report.json"
    run_ = subprocess.run([sys.executable, "-m", "offerd.cli", "simulate", str(folder), "--space", "web",
                           "--population", people, "--at", "2026-11-23T10:00:00Z", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert run_.returncode == 0, run_.stderr
    assert "line 3:" in run_.stderr and "simulate: 9/9 rows (100%)" in run_.stderr
    assert "cap bound from line 6" in run_.stdout
    assert json.loads(out.read_text())["spaces"]["web"]["ranks"][0] == {"a": 3, "b": 1, "c": 1}
    bad = subprocess.run([sys.executable, "-m", "offerd.cli", "simulate", str(folder), "--space", "nope",
                          "--population", people], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no space 'nope'" in bad.stderr


def test_an_offer_is_proposed_once_across_the_spaces_of_a_decision(tmp_path):
    catalog = lang.check({"c.offer": """\
schema contact { age: int }
schema context { }
space web { limit 1 }
space mail { limit 1 }
offer a { spaces web, mail  weight 10 }
offer b { spaces mail  weight 1  eligible contact.age >= 18 }
"""})
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "age": 30}\n{"id": "y", "age": 10}\n')
    r = simulate.simulate(catalog, ["web", "mail"], population.read(str(path), catalog), AT, workers=1).to_json()
    web, mail = r["spaces"]["web"], r["spaces"]["mail"]
    assert web["ranks"] == [{"a": 2}]
    assert mail["ranks"] == [{"b": 1}] and mail["nothing"] == 1  # y: a went to web, b needs 18
    assert mail["offers"]["a"]["proposed_in_an_earlier_space"] == 2


def test_comparing_two_versions_says_who_changes_offers_and_why(catalog, people, tmp_path):
    other = lang.check({"c.offer": CATALOG.replace("contact.age >= 18", "contact.age >= 21")
                        .replace('contact.country == "FR"', 'contact.country in ["FR", "DE"]')})
    r = run(catalog, people, workers=1, compare=other)
    c = r["compare"]["spaces"]["web"]
    assert c["contacts_changed"] == 2 and c["only_reordered"] == 0  # p5 (20: too young for a now), p6 (DE: a and b)
    assert c["gained"] == {"a": 1, "b": 1}
    lost_a, lost_c = c["lost"]["a"], c["lost"]["c"]
    assert lost_a["contacts"] == 1 and all("offer a: eligible" in why for why in lost_a["because"])
    assert lost_c == {"contacts": 1, "because": {
        "eligible, not chosen (outweighed, capped, or proposed in an earlier space)": 1}}
    assert r["compare"]["report"]["spaces"]["web"]["offers"]["a"]["proposed"] == 3  # p1, p2, p6
    assert r["spaces"]["web"]["ranks"] == [{"a": 3, "b": 1, "c": 1}, {"b": 2}]  # unchanged
    different = lang.check({"c.offer": CATALOG.replace("country: string", "country: string  vip: bool")})
    with pytest.raises(ValueError, match="same contact schema"):
        run(catalog, people, workers=1, compare=different)


CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make test`


def test_the_html_page_renders_in_headless_chromium_with_its_charts(catalog, people, tmp_path):
    from offerd.offline.report_html import page

    other = lang.check({"c.offer": CATALOG.replace("weight 5", "weight 50")})
    html = page(run(catalog, people, workers=1, compare=other))
    path = tmp_path / "report.html"
    path.write_text(html)
    assert "<script" not in html and "http" not in html  # self-contained: nothing runs, nothing fetched
    assert os.path.exists(CHROMIUM), "headless Chromium is missing: `make test` installs Debian's chromium"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="chart by-rank"') == 1 and dom.count('class="chart eliminations"') == 1
    by_rank = dom[dom.index('class="chart by-rank"'):]
    by_rank = by_rank[:by_rank.index("</svg>")]
    assert by_rank.count("<rect") == 4 + 2  # a: rank 1; b: ranks 1 and 2; c: rank 1; a legend box per rank
    assert "rank 1: 3" in by_rank  # a's bar says its count
    assert "Compared with catalog" in dom and "only in rank" in dom


def test_the_html_page_escapes_what_it_shows():
    from offerd.offline.report_html import page

    evil = "<img src=x onerror=alert(1)>"
    report = {"catalog": "c" * 64, "at": evil, "contacts": 1, "bad_rows": 0, "caps_applied": True, "seconds": 0.1,
              "spaces": {evil: {"ranks": [{evil: 1}], "fallback_only": 0, "nothing": 0, "caps": {evil: {
                  "offer": evil, "first_bound_line": 1, "refused": 1}},
                  "offers": {evil: {"proposed": 1, "share": 1.0, "eligible": 1, "refused_by_caps_in_run": 0,
                                    "proposed_in_an_earlier_space": 0, "eliminated": {evil: 2}, "weight": None}}}}}
    html = page(report)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_line_that_is_not_utf8_is_one_bad_row(catalog, tmp_path):
    good = [json.dumps({"id": f"p{i}", "age": 30}).encode() for i in range(5000)]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_bytes(b"\n".join(good[:10] + [b'{"id": "x\xff", "age": 1}'] + good[10:]) + b"\n")
    r = run(catalog, str(jsonl), workers=1)
    assert r["contacts"] == 5000 and r["bad_row_examples"] == ["line 11: not UTF-8: invalid start byte at byte 10"]
    raw = simulate.simulate(catalog, ["web"], str(jsonl), AT, workers=2).to_json()
    assert raw["contacts"] == 5000 and raw["bad_rows"] == 1
    csv_path = tmp_path / "p.csv"
    csv_path.write_bytes(b"id,age\na,30\nb\xff,30\nc,30\n")
    r = run(catalog, str(csv_path), workers=1)
    assert r["contacts"] == 2 and r["bad_row_examples"] == ["line 3: not UTF-8"]


def _many_offers() -> str:
    """40 offers in two spaces, many of them tied on weight, in categories whose caps (and
    the offers' own) are far beyond what a run of a few hundred contacts can reach."""
    out = ["schema contact { age: int  country: string  segment: string  score: int }",
           "schema context { page: string }",
           "space web { limit 3  fallback f  cap 100 per contact per 1d }",
           "space mail { limit 2 }",
           "category club { cap 50 per contact per 7d }",
           "category club.inner { cap 1000000 total }",
           "offer f { spaces web }"]
    for i in range(40):
        rules = [f"spaces {'web, mail' if i % 3 == 0 else 'web'}",
                 f"weight {i % 4}" if i % 5 else "weight contact.score ?? 0",
                 f'eligible contact.age ?? 0 >= {10 + i % 30}' if i % 2 else
                 f'eligible contact.country in ["FR", "DE"] or contact.segment == "s{i % 3}"']
        if i % 4 == 1:
            rules.append("category club" if i % 8 == 1 else "category club.inner")
        if i % 6 == 0:
            rules.append("cap 1000000 total per 30d")
        if i % 9 == 0:
            rules.append('eligible in mail: context.page != "none"')
        out.append(f"offer o{i} {{ " + "  ".join(rules) + " }")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("caps", [True, False])
def test_with_caps_that_cannot_bind_a_simulation_picks_what_a_dry_run_decision_picks(tmp_path, caps):
    """The differential test of arbitration: for every contact of a generated population,
    the offers a simulation chooses per space are those a dry-run decision at the same
    time, with the same context, proposes (the fallback included), in the same order."""
    from offerd.engine import Engine, Request

    catalog = lang.check({"c.offer": _many_offers()})
    path = tmp_path / "pop.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in population.generate(catalog, 400, seed=11)))
    context = {"page": "home"}
    simulated = {}
    simulate.simulate(catalog, ["web", "mail"], str(path), AT, workers=2, caps=caps, context=context,
                      each=lambda line, picks: simulated.__setitem__(line, picks))
    engine = Engine(None, catalog)
    assert engine.space("web").ranks_by_bound  # the decision takes its best-first path
    rows = [r for r in population.read(str(path), catalog)]
    assert len(rows) == len(simulated) == 400
    ties = 0
    for row in rows:
        d = engine.decide(Request(("web", "mail"), row.contact_id, attributes=row.attributes, context=context,
                                  dry_run=True, time=AT))
        decided = {r.space: tuple(p.offer for p in r.proposals) for r in d.spaces}
        assert simulated[row.line] == decided, row
        ties += len({p.weight for p in d.spaces[0].proposals}) < len(d.spaces[0].proposals)
    assert ties > 50  # ties on weight are common: declaration order decided them alike


@pytest.mark.parametrize("workers", [1, 2])
def test_a_spaces_own_rule_holds_back_its_fallback(tmp_path, workers):
    """As in a decision: a contact who fails the space's `eligible` gets nothing there, not
    the fallback; one who passes it but wins nothing gets the fallback."""
    catalog = lang.check({"c.offer": """\
schema contact { opt_in_sms: bool  age: int }
schema context { }
space sms { channel outbound  limit 1  fallback generic  eligible contact.opt_in_sms ?? false }
offer promo { spaces sms  eligible contact.age >= 18 }
offer generic { spaces sms }
"""})
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "opt_in_sms": true, "age": 30}\n{"id": "b", "opt_in_sms": true, "age": 10}\n'
                    '{"id": "c", "opt_in_sms": false, "age": 30}\n{"id": "d"}\n')
    r = simulate.simulate(catalog, ["sms"], str(path), AT, workers=workers).to_json()["spaces"]["sms"]
    assert r["ranks"] == [{"promo": 1}] and r["fallback_only"] == 1 and r["nothing"] == 2


CONTEXTUAL = """\
schema contact { age: int }
schema context { channel: string in ["web", "app"]  visits: int }
space home { limit 1  fallback f }
offer app_only { spaces home  weight 5  eligible context.channel == "app" }
offer regular { spaces home  weight 1  eligible context.visits ?? 0 >= 3 }
offer f { spaces home }
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_contacts_own_context_values_win_over_the_runs(tmp_path, workers):
    """`context.NAME` keys and a nested `context` object in JSON Lines, `context.NAME`
    columns in CSV: each contact is decided with the run's context under its own values."""
    catalog = lang.check({"c.offer": CONTEXTUAL})
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "a", "context.channel": "app"}\n'  # app_only
                     '{"id": "b", "context": {"visits": 5}}\n'  # regular (channel: the run's web)
                     '{"id": "c"}\n'  # the run's context alone: the fallback
                     '{"id": "d", "context": {"channel": "app"}, "context.visits": 4}\n')  # app_only outweighs
    picks = {}
    simulate.simulate(catalog, ["home"], str(jsonl), AT, workers=workers, context={"channel": "web"},
                      each=lambda line, p: picks.__setitem__(line, p["home"]))
    assert picks == {1: ("app_only",), 2: ("regular",), 3: ("f",), 4: ("app_only",)}
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,age,context.channel,context.visits\na,30,app,\nb,30,,7\nc,30,,\n")
    picks.clear()
    simulate.simulate(catalog, ["home"], str(csv_path), AT, workers=workers, context={"channel": "web"},
                      each=lambda line, p: picks.__setitem__(line, p["home"]))
    assert picks == {2: ("app_only",), 3: ("regular",), 4: ("f",)}


def test_a_rows_bad_context_values_make_it_a_bad_row_naming_them(tmp_path):
    catalog = lang.check({"c.offer": CONTEXTUAL})
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "context.channel": "tv"}\n{"id": "b", "context": {"chanel": "app"}}\n'
                    '{"id": "c", "context": [1]}\n{"id": "d", "context.visits": "many", "age": "old"}\n'
                    '{"id": "e", "context": {"visits": 1}, "context.visits": 2}\n{"id": "f", "context.visits": 2}\n')
    r = simulate.simulate(catalog, ["home"], str(path), AT, workers=2).to_json()
    assert r["contacts"] == 1 and r["bad_row_examples"] == [
        'line 1: context.channel: "tv" is not one of "web", "app"',
        "line 2: context.chanel is not in schema context (did you mean context.channel?)",
        "line 3: context: a JSON object of context values, not list",
        "line 4: contact.age: expected int, got str; context.visits: expected int, got str",
        "line 5: context.visits is given twice"]
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,context.visits\na,3\nb,x\n")
    r = simulate.simulate(catalog, ["home"], str(csv_path), AT, workers=1).to_json()
    assert r["contacts"] == 1 and r["bad_row_examples"] == ["line 3: context.visits: 'x' is not a int"]


def test_generated_populations_are_plausible_and_have_distinct_ids(tmp_path):
    catalog = lang.check({"c.offer": """\
schema contact { age: int  birthday: date  cart_total: float  segment: string in ["basic", "gold"]
                 score: int in 1 to 5  customer_id: string  first_name: string  tags: set<string>  visits: int }
schema context { }
space web { limit 1 }
offer a { spaces web  eligible contact.age >= 18 and contact.cart_total ?? 0 > 100 and "vip" in contact.tags
                            and contact.visits > 0 }
"""})
    rows = list(population.generate(catalog, 3000, seed=5))
    assert rows == list(population.generate(catalog, 3000, seed=5))
    assert [r["id"] for r in rows[:2]] == ["c0000001", "c0000002"] and len({r["id"] for r in rows}) == 3000
    ages = [r["age"] for r in rows if "age" in r]
    assert 0 <= min(ages) and max(ages) <= 110 and sum(a >= 18 for a in ages) > 0.85 * len(ages)
    assert {17, 18, 19} <= set(ages)  # either side of the rule's threshold
    born = [datetime.date.fromisoformat(r["birthday"]) for r in rows if "birthday" in r]
    assert all(datetime.date(1930, 1, 1) <= d <= datetime.date(2008, 1, 1) for d in born)  # adults' birthdays
    assert len({r["customer_id"] for r in rows if "customer_id" in r}) == sum("customer_id" in r for r in rows)
    assert {r["segment"] for r in rows if "segment" in r} == {"basic", "gold"}
    assert {r["score"] for r in rows if "score" in r} == {1, 2, 3, 4, 5}
    totals = [r["cart_total"] for r in rows if "cart_total" in r]
    assert min(totals) >= 0 and any(99 < t <= 101 for t in totals) and any(t > 200 for t in totals)
    assert min(r["visits"] for r in rows if "visits" in r) >= 0
    assert any("vip" in r.get("tags", ()) for r in rows)
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert all(isinstance(x, population.Row) for x in population.read(str(path), catalog))
