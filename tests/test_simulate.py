"""Simulation over a population: a report checked against a population worked out by hand,
bad rows reported with their line numbers and skipped, the same report on one core and on
all, and the command line end to end."""
import datetime
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from golden import cases, compare

from offerd import lang
from offerd.offline import population, report_text, simulate
from offerd.offline.report import VOLATILE

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


def same_run(report: dict) -> dict:
    """A report less what differs between runs of the same inputs (timings, processes) and
    how the rows were given (a file's path, or rows read already)."""
    report = {k: v for k, v in report.items() if k not in VOLATILE}
    report["run"] = {**report["run"], "population": {**report["run"]["population"], "file": None}}
    if "compare" in report:
        report["compare"] = {**report["compare"], "report": same_run(report["compare"]["report"])}
    return report


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
    assert "cap 3 total" in cap and (bound["offers"], bound["first_bound_line"], bound["refused"]) == ({"a": 1}, 6, 1)
    assert bound["scope"] == "total: filled earlier in population order" and bound["at"] == "c.offer:4:62"
    assert a["weight"]["min"] == a["weight"]["max"] == 10


def test_rows_parsed_by_the_workers_give_the_same_report(catalog, people):
    """Given the file's path, JSON Lines are parsed in the worker processes."""
    other = lang.check({"c.offer": CATALOG.replace("weight 5", "weight 50")})
    typed = run(catalog, people, workers=1, compare=other, by=["country"])
    raw = simulate.simulate(catalog, ["web"], people, AT, workers=2, compare=other, by=["country"]).to_json()
    assert same_run(raw) == same_run(typed)
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
        r = simulate.simulate(catalog, spaces, source, AT, workers=workers, context=ctx, by=["segment", "age"])
        return same_run(r.to_json())

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
    caps = run_.stdout[run_.stdout.index("Caps that refused offers during the run in web"):].splitlines()
    assert caps[1].split() == ["refused", "first", "at", "line", "cap", "filled", "by", "offers", "refused"]
    assert caps[2].split()[:6] == ["1", "6", "c.offer:4:62", "offer", "a:", "cap"]
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
    # p5 (20, FR): a,b here, b there (too young for a); p6 (25, DE): c here (a capped), a,b there
    assert c["contacts_changed"] == 2 and c["only_reordered"] == 0
    o = c["offers"]
    assert {k: (v["gained"], v["lost"]) for k, v in o.items()} == {"a": (1, 1), "b": (1, 0), "c": (0, 1)}
    why = {k: [(w["reason"], w["rule"] and (w["rule"]["at"], w["rule"]["text"]), w["this"], w["other"])
               for w in v["why_not"]] for k, v in o.items()}
    assert sorted(why["a"]) == [
        ("a total cap filled earlier in population order", ("c.offer:4:62", "cap 3 total"), 1, 0),  # p6, here
        ("not eligible", ("c.offer:4:34", "eligible contact.age >= 21"), 0, 1)]  # p5, there
    assert why["b"] == [("not eligible", ("c.offer:5:33", 'eligible contact.country == "FR"'), 1, 0)]
    assert why["c"] == [("outweighed by other offers (weight, then the space's limit)", None, 0, 1)]
    assert r["compare"]["report"]["spaces"]["web"]["offers"]["a"]["proposed"] == 3  # p1, p2, p6
    assert r["spaces"]["web"]["ranks"] == [{"a": 3, "b": 1, "c": 1}, {"b": 2}]  # unchanged
    different = lang.check({"c.offer": CATALOG.replace("country: string", "country: string  vip: bool")})
    with pytest.raises(ValueError, match="same contact schema"):
        run(catalog, people, workers=1, compare=different)


def test_compare_separates_earlier_spaces_caps_per_decision_and_weight(tmp_path):
    """Two spaces, a group capped once per decision: x (30) and y (10) change offers for
    every reason arbitration has, each counted under the version that does not propose."""
    base = """\
schema contact { age: int }
schema context { }
space web { limit 1 }
space mail { limit 1 }
group pair { cap 1 per decision }
offer a { spaces web, mail  weight 6  weight in web: 4 }
offer c { spaces web  weight 3  groups pair }
offer b { spaces mail  weight 5  groups pair }
offer d { spaces mail  weight 1 }
"""
    other = base.replace("weight in web: 4", "weight in web: 2  eligible contact.age >= 18")
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "age": 30}\n{"id": "y", "age": 10}\n')
    a, b = lang.check({"c.offer": base}), lang.check({"c.offer": other})
    r = simulate.simulate(a, ["web", "mail"], str(path), AT, workers=1, compare=b, label="A", compare_label="B")
    c = r.to_json()["compare"]
    assert (c["label"], c["catalog"]) == ("B", b.hash)

    def why(space):
        return {offer: {(w["reason"], w["rule"]["text"] if w["rule"] else None): (w["this"], w["other"])
                        for w in o["why_not"]} for offer, o in c["spaces"][space]["offers"].items()}
    assert why("web") == {
        "a": {("outweighed by other offers (weight, then the space's limit)", None): (0, 1),
              ("not eligible", "eligible contact.age >= 18"): (0, 1)},
        "c": {("outweighed by other offers (weight, then the space's limit)", None): (2, 0)}}
    assert why("mail") == {
        "a": {("proposed in an earlier space of the call", None): (1, 0)},
        "b": {("outweighed by other offers (weight, then the space's limit)", None): (0, 1),
              ("a cap per decision, taken by offers chosen earlier in the call", "cap 1 per decision"): (0, 1)},
        "d": {("outweighed by other offers (weight, then the space's limit)", None): (1, 0)}}
    caps = c["report"]["spaces"]["mail"]["caps"]
    assert [(v["owner"], v["scope"], v["refused"]) for v in caps.values()] == [
        ("group pair", "per decision: offers chosen earlier in the call", 1)]


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
    assert "Compared with" in dom and "only in rank" in dom


def test_the_html_page_escapes_what_it_shows(tmp_path):
    from offerd.offline.report_html import page

    evil = "<img src=x onerror=alert(1)>"
    catalog = lang.check({"c.offer": CATALOG.replace('contact.country == "DE"', f'contact.country == "{evil}"')})
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "p1", "age": 30, "country": evil}) + "\n" + json.dumps({"id": evil, "age": evil})
                    + "\n")
    html = page(simulate.simulate(catalog, ["web"], str(path), AT, workers=1, by=["country"], label=evil).to_json())
    assert "<img" not in html and html.count("&lt;img src=x onerror=alert(1)&gt;") >= 4  # label, rule, value, bad row


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


def test_command_line_refuses_bad_columns_and_unknown_by_attributes_in_one_line(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "c.offer").write_text(CONTEXTUAL)
    good = tmp_path / "p.jsonl"
    good.write_text('{"id": "a"}\n')
    cases = []
    for name, header in (("col", "id,context.chanel"), ("attr", "id,agee"), ("root", "id,ctx.channel")):
        path = tmp_path / f"{name}.csv"
        path.write_text(f"{header}\nx,1\n")
        cases.append((["--population", path], {
            "col": "column 'context.chanel' is not in schema context (did you mean context.channel?)",
            "attr": "column 'agee' is neither 'id', a contact attribute nor context.NAME (did you mean age?)",
            "root": "column 'ctx.channel' is neither"}[name]))
    for name, text in (("noid", "age\n3\n"), ("twice", "id,age,age\nx,1,2\n")):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        cases.append((["--population", path], {"noid": "no 'id' column", "twice": "column 'age' is there twice"}[name]))
    cases += [(["--population", good, "--space", "home"], "a space is named twice: home, home"),
              (["--population", good, "--json", tmp_path / "no" / "r.json"], "No such file or directory"),
              (["--population", good, "--by", "segmnt"], "--by segmnt: no such contact attribute or context value"),
              (["--population", good, "--by", "context.chanel"], "(did you mean context.channel?)"),
              (["--population", good, "--context", "channel=tv"], 'context.channel: "tv" is not one of')]
    for args, want in cases:
        r = subprocess.run([sys.executable, "-m", "offerd.cli", "simulate", str(folder), "--space", "home", "--quiet",
                            *map(str, args)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and want in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


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


CLUB = """\
schema contact { age: int  segment: string  tags: set<string> }
schema context { channel: string }
space web { limit 3 }
category club { eligible contact.segment == "gold" }
offer a { spaces web  category club  weight 1 }
offer b { spaces web  category club  weight 2 }
offer c { spaces web  category club  weight 3  eligible contact.age >= 18 }
offer d { spaces web  weight 1  eligible contact.age >= 18 }
"""
CLUB_ROWS = ['{"id": "g", "age": 30, "segment": "gold", "tags": ["x", "y"]}',  # a b c d: 3 chosen
             '{"id": "s", "age": 30, "segment": "silver", "tags": []}',  # the club's rule removes a, b, c: d
             '{"id": "k", "age": 10, "segment": "silver", "context.channel": "app"}',  # club: a b c; d's own rule
             '{"id": "n", "age": 40, "tags": ["x"]}']  # no segment: the club's rule is not true


def test_each_contact_counts_once_per_rule_and_rules_come_with_their_text(tmp_path):
    catalog = lang.check({"c.offer": CLUB})
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(CLUB_ROWS) + "\n")
    web = simulate.simulate(catalog, ["web"], str(path), AT, workers=1).to_json()["spaces"]["web"]
    club, d = web["rules"].values()  # the most contacts first
    assert (club["contacts"], club["offers_removed"], club["offers"]) == (3, 9, {"a": 3, "b": 3, "c": 3})
    assert (club["kind"], club["owner"], club["at"], club["text"], club["clauses"]) == (
        "eligible", "category club", "c.offer:4:17", 'eligible contact.segment == "gold"',
        [{"text": 'contact.segment == "gold"', "contacts": 3}])  # one clause: every contact the rule removed
    assert (d["contacts"], d["offers_removed"], d["owner"], d["text"]) == (1, 1, "offer d", "eligible contact.age >= 18")
    assert list(web["rules"]) == ["c.offer:4:17: category club: eligible", "c.offer:8:33: offer d: eligible"]
    assert web["offers"]["a"]["eliminated"] == {"c.offer:4:17: category club: eligible": 3}  # the same keys


SALES = """\
schema contact { age: int  income: int  consent: bool }
schema context { channel: string }
let adult = contact.age >= 18
space call { limit 2 }
category sales { eligible contact.consent and adult and contact.income >= 20000 }
offer a { spaces call  category sales  weight 2 }
offer b { spaces call  category sales  weight 1 }
offer c { spaces call  weight 1  cap 1 total }
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rule_of_several_clauses_counts_each_contact_under_its_first_clause_not_true(tmp_path, workers):
    rows = ([{"id": f"n{i}", "age": 30, "income": 30000} for i in range(3)]  # consent absent: the first clause
            + [{"id": f"k{i}", "age": 12, "income": 30000, "consent": True} for i in range(2)]  # the let
            + [{"id": f"p{i}", "age": 30, "income": 100, "consent": True} for i in range(4)]  # the income
            + [{"id": "ok", "age": 30, "income": 30000, "consent": True}])
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = simulate.simulate(lang.check({"s.offer": SALES}), ["call"], str(path), AT, workers=workers).to_json()
    rules = report["spaces"]["call"]["rules"]
    sales = rules["s.offer:5:18: category sales: eligible"]
    assert (sales["contacts"], sales["offers_removed"]) == (9, 18)  # each contact once, for a and b
    assert sales["clauses"] == [{"text": "contact.consent", "contacts": 3}, {"text": "adult", "contacts": 2},
                                {"text": "contact.income >= 20000", "contacts": 4}]
    assert "cap" not in {r["kind"] for r in rules.values()}  # caps in a run are counted apart, not as rules
    lines = report_text.text(report).splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:3] == ["9", "18", "s.offer:5:18"])
    assert [" ".join(x.split()) for x in lines[at + 1:at + 4]] == [
        "3 clause: contact.consent", "2 clause: adult", "4 clause: contact.income >= 20000"]


def test_by_gives_the_figures_per_value_absent_included(tmp_path):
    catalog = lang.check({"c.offer": CLUB})
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(CLUB_ROWS) + "\n")
    r = simulate.simulate(catalog, ["web"], str(path), AT, workers=2, by=["segment", "context.channel", "tags", "age"],
                          context={"channel": "web"}).to_json()
    assert r["run"]["by"] == ["contact.segment", "context.channel", "contact.tags", "contact.age"]
    rows = {name: {row["value"]: row for row in b["rows"]} for name, b in r["by"].items()}
    segment = rows["contact.segment"]
    assert [row["value"] for row in r["by"]["contact.segment"]["rows"]] == ["silver", "gold", "absent"]
    assert {v: row["contacts"] for v, row in segment.items()} == {"silver": 2, "gold": 1, "absent": 1}
    silver = segment["silver"]["spaces"]["web"]
    assert (silver["proposed"], silver["nothing"], silver["offers"]) == (1, 1, {"d": 1})
    assert silver["eliminated"] == {"c.offer:4:17: category club: eligible": 2, "c.offer:8:33: offer d: eligible": 1}
    assert segment["gold"]["spaces"]["web"]["offers"] == {"a": 1, "b": 1, "c": 1}
    assert {v: row["contacts"] for v, row in rows["context.channel"].items()} == {"web": 3, "app": 1}
    assert r["by"]["contact.tags"]["counted_per_item"]
    assert {v: row["contacts"] for v, row in rows["contact.tags"].items()} == {"x": 2, "y": 1, "empty": 1, "absent": 1}
    assert [(v, row["contacts"]) for v, row in rows["contact.age"].items()] == [("10", 1), ("30", 2), ("40", 1)]
    assert r["by"]["contact.age"]["grouping"] == "by value"


def test_numbers_and_dates_widen_into_ranges_with_exact_counts():
    from offerd.lang.types import Type
    from offerd.offline.breakdown import Breakdown

    def run(kind, values):
        b = Breakdown("contact", "x", Type(kind), ["web"])
        b.rule_keys = [[]]
        for v in values:
            b.add(v, [(("o",), 0, frozenset(), [])])
        return b.to_json()

    ints = run("int", list(range(1000)) + [None])
    assert ints["grouping"] == "in ranges of 100"
    assert [(row["value"], row["contacts"], row["spaces"]["web"]["proposed"]) for row in ints["rows"]] == [
        (f"{k * 100} to {k * 100 + 99}", 100, 100) for k in range(10)] + [("absent", 1, 1)]
    floats = run("float", [k / 1000 for k in range(1000)])
    assert floats["grouping"] == "in ranges of 0.1" and floats["rows"][3]["value"] == "0.3 to under 0.4"
    assert [row["contacts"] for row in floats["rows"]] == [100] * 10
    few = run("int", [1, 2, 2, 5])
    assert few["grouping"] == "by value" and [row["value"] for row in few["rows"]] == ["1", "2", "5"]
    days = run("date", [datetime.date(2020, 1, 1) + datetime.timedelta(days=k) for k in range(900)])
    assert days["grouping"] == "by year"
    assert [(row["value"], row["contacts"]) for row in days["rows"]] == [("2020", 366), ("2021", 365), ("2022", 169)]


def test_every_report_states_its_inputs_and_text_and_html_show_the_same_tables(tmp_path):
    from html import escape

    from offerd.offline.report_html import page
    from offerd.offline.report_text import cell, tables, text

    catalog = lang.check({"c.offer": CLUB})
    other = lang.check({"c.offer": CLUB.replace('"gold"', '"silver"')})
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(CLUB_ROWS) + "\nnot json\n")
    r = simulate.simulate(catalog, ["web"], str(path), AT, workers=1, context={"channel": "web"}, by=["segment"],
                          compare=other, label="cat/v1", compare_label="cat/v2", seed=3).to_json()
    assert r["run"] == {"catalog": {"label": "cat/v1", "hash": catalog.hash}, "at": "2026-11-23T10:00:00+00:00",
                        "context": {"channel": "web"}, "spaces": ["web"],
                        "population": {"file": str(path), "contacts": 4, "bad_rows": 1}, "by": ["contact.segment"],
                        "seed": 3, "caps_applied": True, "compare": {"label": "cat/v2", "hash": other.hash}}
    shown, html = text(r), page(r)
    lines = shown.splitlines()
    for name, value in (("catalog", f"cat/v1 (hash {catalog.hash})"), ("decided at", "2026-11-23T10:00:00+00:00"),
                        ("context", "channel=web (a contact's own context values win)"),
                        ("population", f"{path}: 4 contacts, 1 bad rows skipped"), ("by", "contact.segment"),
                        ("seed", "3 (the sample of contacts whose weights are shown)"),
                        ("compared with", f"cat/v2 (hash {other.hash})")):
        assert f"  {name:<13}  {value}" in lines, name
        assert f"<td class=text>{escape(value)}</td>" in html, name
    made = tables(r)
    assert [t.title for t in made][-2:] == ["By contact.segment (by value), space web",
                                           f"Compared with cat/v2 ({other.hash[:12]}), space web"]
    for t in made[1:]:  # the same headers and cells in both (the inputs: the same cells)
        assert all(h in shown for h in t.headers) and all(f">{h}</th>" in html for h in t.headers), t.title
    for t in made:
        for v in (v for row in t.rows for v in row):
            assert cell(v) in shown and escape(cell(v)) in html, (t.title, v)
    assert "most eliminated by (contacts)" in shown and "line 5: not JSON" in html


@pytest.mark.parametrize("path", cases("simulate", "*.run"))
def test_report_golden(path):
    """A fixture's run (catalog, population, spaces, context, --by, --compare, time) gives
    exactly its golden report, as JSON and as text, timings left out; on one process and
    on two alike. OFFERD_UPDATE_GOLDEN=1 rewrites them."""
    from offerd.offline.report_text import text

    spec = json.loads(path.read_text())
    folder = path.parent

    def catalog(name):
        return lang.check({name: (folder / name).read_text()})

    def report(workers):
        r = simulate.simulate(catalog(spec["catalog"]), spec["spaces"], str(folder / spec["population"]),
                              datetime.datetime.fromisoformat(spec["at"]), workers=workers, context=spec["context"],
                              by=spec["by"], compare=catalog(spec["compare"]), label=spec["catalog"],
                              compare_label=spec["compare"], population_file=spec["population"]).to_json()
        r = {k: v for k, v in r.items() if k not in VOLATILE}
        r["compare"]["report"] = {k: v for k, v in r["compare"]["report"].items() if k not in VOLATILE}
        return r

    one = report(1)
    assert report(2) == one
    compare(path, ".report.json", json.dumps(one, indent=2, ensure_ascii=False) + "\n")
    compare(path, ".report.txt", text(one) + "\n")


def test_a_csv_saved_by_a_spreadsheet_with_its_byte_order_mark_is_read(catalog, tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("\ufeffid,age\na,30\n".encode("utf-8"))
    report = simulate.simulate(catalog, ["web"], str(path), AT, workers=1).to_json()
    assert (report["contacts"], report["bad_rows"]) == (1, 0)


def test_a_float_beyond_any_range_gets_its_own_row_in_by(tmp_path):
    catalog = lang.check({"a.offer": "schema contact { score: float }\nschema context { }\nspace web { limit 1 }\n"
                                     "offer a { spaces web  eligible contact.score > 0.5 }\n"})
    rows = [{"id": f"c{i}", "score": i / 100} for i in range(13)] + [{"id": "big", "score": 1.5e308},
                                                                       {"id": "neg", "score": -1.7e308}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by = simulate.simulate(catalog, ["web"], str(path), AT, workers=1, by=["score"]).to_json()["by"]["contact.score"]
    assert {r["value"]: r["contacts"] for r in by["rows"]}["beyond ±1e15"] == 2


def test_two_simulations_in_threads_of_one_process_keep_apart(tmp_path):
    """A server runs gRPC Simulate calls in threads, each in process: each keeps its own spaces."""
    import concurrent.futures

    small = lang.check({"a.offer": "schema contact { age: int }\nschema context { }\nspace web { limit 1 }\n"
                                   "offer a { spaces web  eligible contact.age > 10 }\n"})
    big = lang.check({"b.offer": "schema contact { age: int }\nschema context { }\nspace web { limit 2 }\n"
                                 + "".join(f"offer o{i} {{ spaces web  weight {i}  eligible contact.age > {i} }}\n"
                                           for i in range(30))})
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "age": i % 40}) + "\n" for i in range(3000)))
    alone = {id(c): simulate.simulate(c, ["web"], str(path), AT, workers=1).to_json()["spaces"] for c in (small, big)}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = [(c, pool.submit(simulate.simulate, c, ["web"], str(path), AT, workers=1)) for c in (small, big) * 3]
        for c, run_ in runs:
            assert run_.result().to_json()["spaces"] == alone[id(c)]


def test_context_on_the_command_line_is_typed_by_the_catalogs_schema(tmp_path):
    """`--context code=01234` for a string stays "01234"; a bad int is one line, exit 2."""
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "c.offer").write_text('schema contact { }\nschema context { code: string  n: int }\n'
                                    'space s { limit 1 }\noffer zero { spaces s  eligible context.code == "01234" }\n'
                                    'offer many { spaces s  weight 2  eligible context.n > 5 }\n')
    people = tmp_path / "p.jsonl"
    people.write_text('{"id": "a"}\n')

    def run_(*context):
        args = [x for c in context for x in ("--context", c)]
        return subprocess.run([sys.executable, "-m", "offerd.cli", "simulate", str(folder), "--space", "s", "--quiet",
                               "--population", str(people), "--json", str(tmp_path / "r.json"), *args],
                              capture_output=True, text=True, timeout=60)

    r = run_("code=01234", "n=3")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["spaces"]["s"]["offers"]["zero"]["proposed"] == 1
    r = run_("n=three")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "context.n is an int" in r.stderr, r.stderr


# --- parts: a worker arbitrates only the contacts no total cap can touch ---------------------

CAP_KINDS = ["cap {n} total", "cap {n} total per 1d", "cap {n} per contact", "cap {n} per contact per 7d"]


@st.composite
def capped_catalogs(draw) -> str:
    """Small catalogs whose offers, categories, groups and spaces carry random caps of every
    scope: total caps that fill early or late, caps per decision and per contact."""
    def caps(decision: bool) -> str:
        kinds = CAP_KINDS + (["cap {n} per decision"] if decision else [])
        return "  ".join(draw(st.sampled_from(kinds)).format(n=draw(st.integers(1, 40)))
                         for _ in range(draw(st.integers(0, 2))))
    out = ["schema contact { age: int in 0 to 99  score: float }", "schema context { }",
           f"space web {{ limit {draw(st.integers(1, 3))}  {caps(True)} }}",
           f"space app {{ limit {draw(st.integers(1, 2))}  {caps(True)} }}",
           f"category c1 {{ {caps(True)} }}", f"category c2 {{ {caps(True)} }}", f"group g1 {{ {caps(True)} }}"]
    for k in range(draw(st.integers(3, 6))):
        spaces = draw(st.sampled_from(["web", "app", "web, app"]))
        owner = draw(st.sampled_from(["", "category c1", "category c2", "groups g1", "category c2  groups g1"]))
        out.append(f"offer o{k} {{ {owner}  spaces {spaces}  weight {draw(st.integers(1, 9))} + (contact.score ?? 0) "
                   f"* {draw(st.integers(0, 3))}  eligible contact.age ?? 0 >= {draw(st.integers(0, 60))}  {caps(False)} }}")
    return "\n".join(out)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=capped_catalogs(), seed=st.integers(0, 1000))
def test_arbitrating_in_the_parts_gives_the_report_of_arbitrating_every_contact_in_order(tmp_path_factory, source,
                                                                                          seed):
    catalog = lang.check({"c.offer": source})
    path = str(tmp_path_factory.mktemp("pop") / "people.jsonl")
    with open(path, "w") as f:
        for row in population.generate(catalog, 400, seed):
            f.write(json.dumps(row) + "\n")

    def run(workers=1, **kw) -> dict:
        out = simulate.simulate(catalog, ["web", "app"], path, AT, workers=workers, part_bytes=2048, **kw).to_json()
        for key in ("seconds", "contacts_per_second", "workers"):
            out.pop(key)
        return out
    # `each` makes the run arbitrate every contact itself, in order, as before parts existed;
    # in one process every part is sent with the totals of the parts before it; with two,
    # parts are sent ahead, and their totals have moved when they come back
    ordered = json.dumps(run(each=lambda line, picks: None))  # the order of every dict too
    assert json.dumps(run()) == ordered, source
    assert json.dumps(run(workers=2)) == ordered, source
