"""Security and operations: TLS, the admin token, catalog file names, limits, backups."""
from __future__ import annotations

import threading
import time

import grpc
import pytest

from offerd import lang
from offerd.cli import main
from offerd.client import Client
from offerd.examples import CATALOG
from offerd.lang.builder import MAX_DEPTH
from offerd.store import Store
from offerd.v1 import offerd_pb2 as pb

from served import ADULT, Running, Served, stored

EXAMPLE = lang.read_dir(CATALOG)


def test_tls_serves_clients_that_trust_its_ca_and_no_one_else(tmp_path, certs):
    s = Running(str(tmp_path / "data"), tls_cert=certs["server.pem"], tls_key=certs["server.key"])
    ca = open(certs["ca.pem"], "rb").read()
    try:
        with Client(s.target, credentials=grpc.ssl_channel_credentials(ca)) as c:
            assert c.decide(["web_home"], "tls", attributes=ADULT).spaces[0].propositions
        with Client(s.target, timeout=5) as plain, pytest.raises(grpc.RpcError) as e:
            plain.decide(["web_home"], "tls", dry_run=True)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        # a client trusting another CA (here: the server's own certificate is not a CA) refuses
        other = open(certs["client.pem"], "rb").read()
        with Client(s.target, credentials=grpc.ssl_channel_credentials(other), timeout=5) as c, \
                pytest.raises(grpc.RpcError) as e:
            c.decide(["web_home"], "tls", dry_run=True)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        s.stop()


@pytest.mark.parametrize("argv, message", [
    (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "cannot read /nonexistent.pem"),
    (["--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
    (["--client-ca", "ca.pem"], "--client-ca (mutual TLS) needs --tls-cert and --tls-key"),
    (["--tls-cert", "NOT_PEM", "--tls-key", "NOT_PEM"], "not_pem.txt is not a PEM file"),
], ids=["missing file", "cert without key", "ca without cert", "not PEM"])
def test_tls_settings_that_cannot_work_stop_the_start_with_a_message(tmp_path, argv, message):
    (tmp_path / "not_pem.txt").write_text("not a certificate\n")
    argv = [str(tmp_path / "not_pem.txt") if a == "NOT_PEM" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(["serve", "--listen", "127.0.0.1:0", "--data", str(tmp_path), *argv])
    assert message in str(e.value)


@pytest.mark.parametrize("argv, message", [
    (["--map-size", "inf"], "give a size from 1M to 1024T"),
    (["--map-size", "12"], "give a size from 1M to 1024T"),
    (["--retain", "soon"], "give a duration such as 90s"),
    (["--prune-every=-1h"], "give a duration such as 90s"),
])
def test_sizes_and_durations_that_make_no_sense_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--listen", "127.0.0.1:0", "--data", str(tmp_path), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


ADMIN_CALLS = {
    "Validate": lambda a, md: a.Validate(pb.CatalogFiles(files=EXAMPLE), metadata=md),
    "Deploy": lambda a, md: a.Deploy(pb.CatalogFiles(files=dict(EXAMPLE, **{"z.offer": "let z = 1"})), metadata=md),
    "ListVersions": lambda a, md: a.ListVersions(pb.ListVersionsRequest(), metadata=md),
    "Activate": lambda a, md: a.Activate(pb.ActivateRequest(hash="0" * 64), metadata=md),
    "Rollback": lambda a, md: a.Rollback(pb.RollbackRequest(), metadata=md),
    "Simulate": lambda a, md: list(a.Simulate(pb.SimulateRequest(spaces=["web_home"], population=b'{"id": "a"}\n'),
                                              metadata=md)),
}


@pytest.mark.parametrize("method", ADMIN_CALLS)
def test_every_admin_call_needs_the_token(tmp_path, method):
    s = Running(str(tmp_path), admin_token="s3cret")
    try:
        with Client(s.target, admin_token="s3cret") as c:
            before = [(v.hash, v.live) for v in c.versions()]
            for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),),
                             (("authorization", "Bearer s3cret "),), (("authorization", "bearer s3cret"),)):
                with pytest.raises(grpc.RpcError) as e:
                    ADMIN_CALLS[method](c.admin, metadata)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
                assert "admin token" in e.value.details()
            assert [(v.hash, v.live) for v in c.versions()] == before  # nothing was done
            assert c.decide(["web_home"], "no-token-needed", attributes=ADULT).spaces[0].propositions
    finally:
        s.stop()


@pytest.mark.parametrize("name", ["../x.offer", "/etc/x.offer", "a/../../x.offer", "..\\x.offer", "x.offer\0.txt",
                                  ".offer", "x.txt", "x" * 200 + ".offer", "x\n.offer", "ｘ.offer"])
def test_deployed_file_names_cannot_point_anywhere(tmp_path, name):
    s = Running(str(tmp_path), admin_token="t")
    try:
        with Client(s.target, admin_token="t") as c:
            count = len(c.versions())
            with pytest.raises(grpc.RpcError) as e:
                c.deploy(dict(EXAMPLE, **{name: "let a = 1"}))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "is not allowed" in e.value.details() and "no folders" in e.value.details()
            got = c.validate(dict(EXAMPLE, **{name: "let a = 1"}))
            assert not got.ok and "is not allowed" in got.diagnostics[0].message
            assert len(c.versions()) == count
    finally:
        s.stop()


def test_every_file_name_is_checked_and_128_characters_is_the_most():
    names = {f"f{i:02}.offer": "" for i in range(25)}
    with pytest.raises(lang.CatalogError, match="zz/../escape.offer"):
        lang.check(dict(names, **{"zz/../escape.offer": ""}))  # after 25 good names
    lang.check({"x" * 122 + ".offer": ""})
    with pytest.raises(lang.CatalogError, match="is not allowed"):
        lang.check({"x" * 123 + ".offer": ""})
    with pytest.raises(lang.CatalogError, match="and 5 more file names not allowed"):
        lang.check({f"../{i}.offer": "" for i in range(25)})


def test_catalog_limits_are_enforced_with_messages(tmp_path):
    s = Running(str(tmp_path), admin_token="t")
    try:
        with Client(s.target, admin_token="t") as c:
            many = {f"f{i:04}.offer": "" for i in range(1001)}
            with pytest.raises(grpc.RpcError) as e:
                c.deploy(many)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "the limit is 1000" in e.value.details()
            deep = " + ".join(["contact.age"] * (MAX_DEPTH + 2))
            with pytest.raises(grpc.RpcError) as e:
                c.deploy(dict(EXAMPLE, **{"deep.offer": f"let d = {deep} > 1"}))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"nested more than {MAX_DEPTH} levels" in e.value.details()
            huge = {"big.offer": "# " + "x" * (4 << 20)}  # over the 4 MiB message limit
            with pytest.raises(grpc.RpcError) as e:
                c.deploy(huge)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert c.decide(["web_home"], "after", attributes=ADULT).spaces[0].propositions
    finally:
        s.stop()
    offers = "space web { channel inbound }\n" + "".join(f"offer o{i} {{ spaces web }}\n" for i in range(50_001))
    with pytest.raises(lang.CatalogError, match="50001 offers; the limit is 50000"):
        lang.check({"many.offer": offers})
    big = "# " + "x" * (4 << 20)
    with pytest.raises(lang.CatalogError, match="the limit is 4194304 bytes"):
        lang.check({"big.offer": big})


def test_a_backup_taken_under_load_holds_everything_acknowledged_before_it(tmp_path, capsys):
    s = Served(tmp_path / "live", "--workers", "2")
    acked, stop = [], threading.Event()

    def load(k):
        with Client(s.target, timeout=10, options=[("offerd.test.connection", k)]) as c:
            i = 0
            while not stop.is_set():
                d = c.decide(["web_home"], f"b{k}-{i % 50}", attributes=ADULT)
                acked.extend(p.id for p in d.spaces[0].propositions)
                i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        before = list(acked)
        assert main(["backup", "--data", s.data, str(tmp_path / "copy" / "db")]) == 0
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        assert s.stop() == 0, s.output()
    assert "copied" in capsys.readouterr().out
    assert len(before) > 50 and len(acked) > len(before)
    with Store(str(tmp_path / "copy" / "db")) as copy:
        assert [p for p in before if stored(copy, p) is None] == []
    # the copy serves: a server started on it takes reports on what was decided before it
    s = Served(tmp_path / "copy")
    try:
        with Client(s.target) as c:
            assert c.record(before[0], "accepted")
    finally:
        assert s.stop() == 0
    assert main(["backup", "--data", s.data, str(tmp_path / "copy" / "db")]) == 1  # not over a store
    assert "is not empty" in capsys.readouterr().err
