"""Simulations and batches on a Dask cluster of 2 worker processes on loopback: the report is
the one-machine report for every input form (JSON Lines cut in many parts, a folder of CSV
files, Parquet row groups), also when a worker is killed mid-run; a batch against a cluster
of shards records every contact once, through a killed worker, a killed shard and a rerun."""
from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
import signal

import pytest

from offerd import lang
from offerd.cluster.routing import shard_of
from offerd.examples import CATALOG as EXAMPLE
from offerd.offline import engines, parts, population, remote_batch, simulate
from offerd.store import Contact, Store

AT = datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)
SPACES = ["web", "sms"]
CAPS = """
schema contact { age: int in 0 to 120  opt_in_sms: bool  score: float  segment: string in ["a", "b", "c"] }
schema context { }
space web { limit 3 }
space sms { channel outbound  limit 2  eligible contact.opt_in_sms ?? false }
category sales { eligible in sms: contact.age >= 21  cap 150 total }
group loans { cap 1 per decision  eligible in sms: contact.age >= 25  cap 90 total per 1d }
group big { eligible contact.age >= 30 }
offer loan_a { groups loans  spaces web, sms  weight 9 + (contact.score ?? 0) }
offer loan_b { groups loans, big  spaces web, sms  weight 8 + (contact.score ?? 0) * 2 }
offer card { category sales  spaces web, sms  weight 5 + contact.age / 20  eligible contact.segment != "c" }
offer gold { category sales  spaces web  weight 7  cap 40 total  eligible contact.segment == "a" }
offer other { spaces web, sms  weight 1 }
"""
VOLATILE = ("seconds", "contacts_per_second", "workers")


@pytest.fixture(scope="module")
def dask():
    engine = engines.Dask("local", 2)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def caps():
    return lang.check({"caps.offer": CAPS})


def write_population(catalog, path: str, count: int, seed: int = 3) -> list[dict]:
    rows = list(population.generate(catalog, count, seed))
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return rows


def report(catalog, source, engine=None, part_bytes=parts.PART_BYTES, **kw) -> str:
    """The report's JSON text (the order of its entries too), without what changes run to run."""
    out = simulate.simulate(catalog, SPACES if catalog.spaces.keys() >= set(SPACES) else ["web_home", "newsletter"],
                            source, AT, workers=1, engine=engine, part_bytes=part_bytes, **kw).to_json()
    for part in (out, out.get("compare", {}).get("report", {})):
        for key in VOLATILE:
            part.pop(key, None)
    return json.dumps(out)


def pids(engine) -> set[int]:
    return set(engine.client.run(os.getpid).values())


def test_a_dask_run_gives_the_one_machine_report_for_every_input_form(tmp_path, dask, caps):
    rows = write_population(caps, str(tmp_path / "people.jsonl"), 3000)
    one = report(caps, str(tmp_path / "people.jsonl"))
    web = json.loads(one)["spaces"]["web"]
    assert {c["scope"] for c in web["caps"].values()} >= {"total: filled earlier in population order",
                                                         "per decision: offers chosen earlier in the call"}
    assert len(parts.split([str(tmp_path / "people.jsonl")], caps, 16 << 10)) >= 8
    assert report(caps, str(tmp_path / "people.jsonl"), dask, 16 << 10) == one

    os.mkdir(tmp_path / "csv")  # the same rows in three CSV files: their lines count the headers
    for k in range(3):
        with open(tmp_path / "csv" / f"part-{k}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "age", "opt_in_sms", "score", "segment"])
            for row in rows[k * 1000:(k + 1) * 1000]:
                w.writerow([row["id"], *(str(row.get(c, "")).lower() if isinstance(row.get(c), bool) else row.get(c, "")
                                         for c in ("age", "opt_in_sms", "score", "segment"))])
    by_csv = report(caps, str(tmp_path / "csv"))
    assert json.loads(by_csv)["contacts"] == 3000 and json.loads(by_csv)["spaces"]["web"]["offers"] == web["offers"]
    assert report(caps, str(tmp_path / "csv"), dask) == by_csv

    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "people.parquet", row_group_size=400)
    by_parquet = report(caps, str(tmp_path / "people.parquet"))
    assert json.loads(by_parquet)["spaces"] == json.loads(one)["spaces"]  # a row per line, as in JSON Lines
    assert report(caps, str(tmp_path / "people.parquet"), dask) == by_parquet


def test_the_example_catalog_with_compare_and_by_is_the_same_on_dask(tmp_path, dask):
    example = lang.load(EXAMPLE)
    write_population(example, str(tmp_path / "people.jsonl"), 2500)
    kw = {"context": {"page": "cart", "device": "mobile"}, "by": ["segment"], "compare": example}
    one = report(example, str(tmp_path / "people.jsonl"), **kw)
    assert json.loads(one)["spaces"]["web_home"]["caps"]  # the A/B test's total cap of 100 fills
    assert report(example, str(tmp_path / "people.jsonl"), dask, 32 << 10, **kw) == one


def test_a_worker_killed_mid_run_leaves_the_report_unchanged(tmp_path, dask, caps):
    write_population(caps, str(tmp_path / "people.jsonl"), 12000)
    one = report(caps, str(tmp_path / "people.jsonl"))
    before = pids(dask)
    killed = []

    def kill_one(done, total, seconds):
        if not killed and done:
            killed.append(sorted(before)[0])
            os.kill(killed[0], signal.SIGKILL)

    assert report(caps, str(tmp_path / "people.jsonl"), dask, 8 << 10, progress=kill_one) == one
    assert killed and killed[0] not in pids(dask)  # it died, and the cluster went on without it


@pytest.fixture
def shards(tmp_path, caps):
    if not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")) or not shutil.which("redis-server"):
        pytest.skip("haproxy and redis-server are installed by `make test`")
    from test_cluster import start
    cluster = start(tmp_path, shards=2, catalog={"caps.offer": CAPS})
    yield cluster
    cluster.stop(drain=False)


def recorded(cluster, rows: list[dict]) -> dict[str, int]:
    """Propositions stored per contact, read from each shard's own store."""
    out = {}
    for i in range(len(cluster.shards)):
        with Store(os.path.join(cluster.folder, f"shard-{i}", "db")) as store:
            for row in rows:
                if shard_of(row["id"], len(cluster.shards)) == i:
                    out[row["id"]] = len(store.read_history(Contact(row["id"])))
    return out


def check_output(path: str, rows: list[dict]) -> dict[str, int]:
    with open(path) as f:
        lines = [json.loads(x) for x in f]
    assert [x["line"] for x in lines] == list(range(1, len(rows) + 1))
    assert [x["id"] for x in lines] == [r["id"] for r in rows]
    return {x["id"]: len(x["propositions"]) for x in lines}


def test_a_batch_on_dask_through_a_killed_worker_a_killed_shard_and_a_rerun_records_nobody_twice(
        tmp_path, dask, caps, shards):
    rows = write_population(caps, str(tmp_path / "people.jsonl"), 3000)
    source, out = [str(tmp_path / "people.jsonl")], str(tmp_path / "out.jsonl")
    stopped = []

    def kill_shard(done, total, seconds):  # a shard dies mid-run: its rows are sent again, then the run stops
        if not stopped and done:
            stopped.append(True)
            shards.signal("shard-1", signal.SIGKILL)

    with pytest.raises(remote_batch.BatchError, match="run the same command again to resume"):
        remote_batch.run(shards.listen, caps, SPACES, source, AT, out, dask, shards=2, retry_for=1.0,
                         part_bytes=16 << 10, progress=kill_shard)
    assert not os.path.exists(out)
    shards.wait("shard-1")
    shards.start_shard(1)
    before, killed = pids(dask), []

    def kill_worker(done, total, seconds):
        if not killed and done:
            killed.append(sorted(before)[0])
            os.kill(killed[0], signal.SIGKILL)

    second = remote_batch.run(shards.listen, caps, SPACES, source, AT, out, dask, shards=2, part_bytes=16 << 10,
                              progress=kill_worker)
    assert killed and second.resumed > 0 and second.decided > 0 and second.decided + second.resumed == 3000
    proposed = check_output(out, rows)
    third = remote_batch.run(shards.listen, caps, SPACES, source, AT, out, dask, shards=2, part_bytes=16 << 10)
    assert (third.decided, third.resumed) == (0, 3000) and check_output(out, rows) == proposed
    shards.stop(drain=False)
    assert recorded(shards, rows) == proposed  # each contact's propositions stored once, on its shard
    assert sum(proposed.values()) == second.propositions > 0


def test_a_population_behind_a_url_is_read_through_fsspec(tmp_path, caps):
    """Object stores are reached through fsspec, as Dask's workers read them: here its
    in-memory store, from this process (a folder URL, its files by name)."""
    import fsspec
    rows = write_population(caps, str(tmp_path / "people.jsonl"), 1200)
    fs = fsspec.filesystem("memory")
    for k in range(2):
        with fs.open(f"memory://people-{tmp_path.name}/part-{k}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows[k * 600:(k + 1) * 600])
    try:
        by_url = report(caps, f"memory://people-{tmp_path.name}/", part_bytes=8 << 10)
        assert json.loads(by_url)["contacts"] == 1200
        assert json.loads(by_url)["spaces"] == json.loads(report(caps, str(tmp_path / "people.jsonl")))["spaces"]
        with pytest.raises(ValueError, match="no population files"):
            report(caps, f"memory://people-{tmp_path.name}/nothing-*.jsonl")
    finally:
        fs.rm(f"memory://people-{tmp_path.name}", recursive=True)


def test_a_batch_whose_live_version_changed_mid_run_finishes_once_it_is_back_and_part_sizes_may_change(tmp_path, caps):
    """A version activated mid-batch stops it; with the batch's version live again, a rerun
    finishes it (the rows decided meanwhile answer as they were decided), also with other
    parts: rows are named by their file and line."""
    from offerd.client import Client
    from served import Running
    srv = Running(str(tmp_path / "server"))
    try:
        with Client(srv.target) as c:
            v1 = c.deploy({"caps.offer": CAPS}).hash
            v2 = c.deploy({"caps.offer": CAPS.replace("weight 1 }", "weight 2 }")}).hash
            c.activate(v1)
        rows = write_population(caps, str(tmp_path / "people.jsonl"), 1500)
        source, out = [str(tmp_path / "people.jsonl")], str(tmp_path / "out.jsonl")
        switched = []

        def switch(done, total, seconds):
            if not switched:
                switched.append(done)
                with Client(srv.target) as c:
                    c.activate(v2)

        with pytest.raises(remote_batch.BatchError, match="the live catalog changed"):
            remote_batch.run(srv.target, caps, SPACES, source, AT, out, engines.Local(1), part_bytes=16 << 10,
                             progress=switch)
        with Client(srv.target) as c:
            c.activate(v1)
        again = remote_batch.run(srv.target, caps, SPACES, source, AT, out, engines.Local(2), part_bytes=40 << 10)
        assert again.resumed > switched[0] > 0 and again.decided + again.resumed == 1500
        proposed = check_output(out, rows)
        third = remote_batch.run(srv.target, caps, SPACES, source, AT, out, engines.Local(1), part_bytes=4 << 10)
        assert (third.decided, third.resumed) == (0, 1500) and check_output(out, rows) == proposed
        history = {r["id"]: len(srv.store.read_history(Contact(r["id"]))) for r in rows}
        assert history == proposed  # nobody decided twice, whatever the parts
    finally:
        srv.stop()


def test_a_population_file_that_changes_during_a_run_stops_it(tmp_path, caps):
    path = tmp_path / "people.jsonl"
    write_population(caps, str(path), 2000)

    def grow(done, total, seconds):
        with open(path, "a") as f:
            f.write(json.dumps({"id": "late", "age": 30}) + "\n")

    with pytest.raises(ValueError, match="changed during the run"):
        report(caps, str(path), part_bytes=8 << 10, progress=grow)


def test_parquet_integer_ids_are_ids_and_a_bad_csv_column_behind_a_url_is_refused_first(tmp_path, caps):
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": [1, 2, 3], "age": [30, 40, 50]}), tmp_path / "ints.parquet")
    assert json.loads(report(caps, str(tmp_path / "ints.parquet")))["contacts"] == 3
    url = f"memory://csv-{tmp_path.name}/people.csv"
    with fsspec.open(url, "w") as f:
        f.write("id,agee\nc1,30\n")
    try:
        with pytest.raises(ValueError, match="column 'agee'"):
            report(caps, url)
    finally:
        fsspec.filesystem("memory").rm(f"memory://csv-{tmp_path.name}", recursive=True)


def test_a_file_named_twice_is_refused_and_a_file_that_shrank_before_its_batch_stops_it(tmp_path, caps):
    path = str(tmp_path / "people.jsonl")
    write_population(caps, path, 300)
    with pytest.raises(ValueError, match="in the population twice"):
        parts.split([path, str(tmp_path)], caps)
    cut = parts.split([path], caps, 4096)
    with open(path, "r+") as f:
        f.truncate(5000)
    with pytest.raises(ValueError, match="changed during the run"):
        remote_batch.scan(path, [p.start for p in cut])
