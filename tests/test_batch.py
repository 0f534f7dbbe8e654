"""Outbound batches: every contact of a population decided and recorded once, the output
in the population's order, and an interrupted batch (SIGKILL) resumed without deciding a
contact twice or losing one."""
import json
import signal
import subprocess
import sys
import time

from offerd import lang
from offerd.offline import population
from offerd.store import Contact, Store

CATALOG = """\
schema contact { age: int }
schema context { }
space mail { limit 2 }
offer a { spaces mail  weight 10  eligible contact.age >= 18  cap 500 total }
offer b { spaces mail  weight 5 }
offer kids { spaces mail  weight 1  eligible contact.age < 18  cap 1 per contact per 30d }
"""


def setup(tmp_path, rows=None, count=0, seed=1, catalog=CATALOG, name="people.jsonl"):
    """A catalog folder and a population file: `rows` as given (lines of text), else
    `count` generated contacts. Returns (folder, population path)."""
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "c.offer").write_text(catalog)
    if rows is None:
        rows = [json.dumps(r) for r in population.generate(lang.check({"c.offer": catalog}), count, seed=seed)]
    people = tmp_path / name
    people.write_text("\n".join(rows) + "\n")
    return folder, people


def batch(folder, data, people, out, *extra):
    return [sys.executable, "-m", "offerd.cli", "batch", str(folder), "--data", str(data), "--space", "mail",
            "--population", str(people), "--out", str(out), "--at", "2026-11-23T10:00:00Z", "--quiet", *extra]


def test_an_interrupted_batch_resumes_without_deciding_a_contact_twice(tmp_path):
    rows = [json.dumps(r) for r in population.generate(lang.check({"c.offer": CATALOG}), 60_000, seed=2)]
    rows.insert(100, '{"id": "broken", "age": "x"}')
    folder, people = setup(tmp_path, rows)
    out, data = tmp_path / "out.jsonl", tmp_path / "data"
    first = subprocess.Popen(batch(folder, data, people, out, "--workers", "2", "--durability", "sync"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.0)
    first.send_signal(signal.SIGKILL)  # mid-way: its two deciding processes die with it
    first.wait()
    assert not out.exists()  # the output is written at the end only
    done = subprocess.run(batch(folder, data, people, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "line 101: contact.age" in done.stderr
    summary = done.stdout
    resumed = int(summary.split("(")[1].split(" ")[0].replace(",", ""))
    assert 0 < resumed < 60_000, summary  # the first run decided some, the second the rest
    entries = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["line"] for e in entries] == sorted(e["line"] for e in entries)
    assert len(entries) == len({e["id"] for e in entries}) == 60_000
    with Store(str(data / "db")) as store:
        for e in entries[::97] + entries[-50:]:  # each contact's history holds its propositions, once
            history = store.read_history(Contact(e["id"]))
            assert sorted(r.id.hex() for r in history) == sorted(p["id"] for p in e["propositions"])
        assert store.total("offer", "a", "proposed", None, 2e9) == 500  # the total cap, exactly
        assert store.total("offer", "a", "proposed", None, 2e9) == sum(
            p["offer"] == "a" for e in entries for p in e["propositions"])
    again = subprocess.run(batch(folder, data, people, out), capture_output=True, text=True, timeout=300)
    assert "60,000 contacts decided (60,000 by an earlier run" in again.stdout  # nothing decided twice


def test_a_batch_writes_csv_too(tmp_path):
    import csv

    folder, people = setup(tmp_path, ["id,age", "ann,30", "kid,10", "old,70"], name="people.csv")
    out = tmp_path / "out.csv"
    done = subprocess.run(batch(folder, tmp_path / "data", people, out), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["id"], r["offer"]) for r in rows] == [("ann", "a"), ("ann", "b"), ("kid", "b"), ("kid", "kids"),
                                                    ("old", "a"), ("old", "b")]
    assert all(len(r["proposition"]) == 32 for r in rows)


def test_a_batch_cannot_run_twice_at_once(tmp_path):
    folder, people = setup(tmp_path, count=40_000, seed=3)
    first = subprocess.Popen(batch(folder, tmp_path / "data", people, tmp_path / "a.jsonl", "--durability", "sync"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    second = subprocess.run(batch(folder, tmp_path / "data", people, tmp_path / "b.jsonl"), capture_output=True,
                            text=True, timeout=120)
    first.kill()
    first.wait()
    assert second.returncode == 2 and "running already" in second.stderr


def test_a_deciding_process_killed_fails_the_batch_clearly_and_a_rerun_finishes_it(tmp_path):
    import os

    folder, people = setup(tmp_path, count=40_000, seed=5)
    out, data = tmp_path / "out.jsonl", tmp_path / "data"
    run = subprocess.Popen(batch(folder, data, people, out, "--workers", "2", "--durability", "sync"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    children = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
    assert children
    os.kill(int(children[0]), signal.SIGKILL)  # one deciding process dies, its command goes on
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2 and "ended with code" in err and "again to resume" in err
    done = subprocess.run(batch(folder, data, people, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 40_000


def test_batch_rows_the_engine_refuses_are_bad_rows_and_the_key_covers_the_context(tmp_path):
    folder, people = setup(tmp_path, [json.dumps({"id": "x" * 300, "age": 30}), json.dumps({"id": "ok", "age": 30})],
                           catalog=CATALOG.replace("schema context { }", "schema context { page: string }"))
    out, data = tmp_path / "out.jsonl", tmp_path / "data"
    first = subprocess.run(batch(folder, data, people, out, "--workers", "1", "--context", "page=home"),
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "line 1: a contact id is 1 to 256" in first.stderr and "1 contacts decided" in first.stdout
    other = subprocess.run(batch(folder, data, people, out, "--workers", "1", "--context", "page=cart"),
                           capture_output=True, text=True, timeout=120)
    assert "(0 by an earlier run" in other.stdout  # another context is another batch
    unknown = subprocess.run(batch(folder, data, people, out, "--workers", "1") + ["--space", "nope"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no space 'nope'" in unknown.stderr


def test_a_batch_decides_each_row_with_its_own_context_values(tmp_path):
    """`context.NAME` columns win over --context, row by row; a column in neither schema
    stops the batch before anything is decided."""
    import csv

    catalog = CATALOG.replace("schema context { }", "schema context { page: string }").replace(
        "offer b { spaces mail  weight 5 }", 'offer b { spaces mail  weight 5  eligible context.page == "cart" }')
    folder, people = setup(tmp_path, ["id,age,context.page", "ann,30,cart", "bob,30,", "kid,10,home"],
                           catalog=catalog, name="people.csv")
    out = tmp_path / "out.csv"
    done = subprocess.run(batch(folder, tmp_path / "data", people, out, "--context", "page=cart"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["id"], r["offer"]) for r in rows] == [("ann", "a"), ("ann", "b"), ("bob", "a"), ("bob", "b"),
                                                    ("kid", "kids")]
    people.write_text("id,age,context.pag\nann,30,cart\n")
    bad = subprocess.run(batch(folder, tmp_path / "data2", people, out), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "column 'context.pag' is not in schema context" in bad.stderr
    assert not (tmp_path / "data2" / "db").exists()
