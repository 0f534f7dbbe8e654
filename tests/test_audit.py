"""The audit log against a real `offerd serve`: every AdminService call leaves one line, in
the server's JSON log and in the --audit-log file, saying who (peer, token, client
certificate), what, which version (the live one before and after a change) and the outcome,
refusals included."""
from __future__ import annotations

import json
import logging

import grpc
import pytest

from offerd import lang
from offerd.cli import main
from offerd.client import Client
from offerd.examples import CATALOG

from served import Running, Served

TOKEN = "s3cret"
EXAMPLE = lang.read_dir(CATALOG)
EXTRA = 'offer extra { spaces web_home  weight 1000  content web_home { title "Extra", url "https://x" } }'


def audit_lines(text: str) -> list[dict]:
    """The audit lines of a JSON log (every line must be JSON)."""
    return [r for r in (json.loads(line) for line in text.splitlines() if line.strip())
            if r.get("logger") == "offerd.audit"]


def test_every_admin_call_leaves_one_audit_line_refusals_included(tmp_path):
    path = tmp_path / "audit.jsonl"
    server = Served(tmp_path / "data", "--workers", "1", "--admin-token", TOKEN, "--log-json",
                    "--audit-log", str(path))
    try:
        with Client(server.target, admin_token=TOKEN, timeout=30) as c:
            first = c.versions()[0]
            deployed = c.deploy({**EXAMPLE, "99.offer": EXTRA}, label="spring sale").hash
            with pytest.raises(grpc.RpcError) as e:
                c.deploy({"a.offer": "offer broken {"}, label="broken")
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert c.activate(first.hash) == first.hash
            assert c.rollback() == deployed
            assert c.validate(EXAMPLE).ok
            assert len(c.versions()) == 2
        with Client(server.target, admin_token="nope", timeout=30) as wrong, pytest.raises(grpc.RpcError) as e:
            wrong.deploy(EXAMPLE, label="intruder")
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with Client(server.target, timeout=30) as none, pytest.raises(grpc.RpcError) as e:
            none.rollback()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert server.stop() == 0
    lines = audit_lines(server.output())
    in_file = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["method"] for r in lines] == ["ListVersions", "Deploy", "Deploy", "Activate", "Rollback", "Validate",
                                            "ListVersions", "Deploy", "Rollback"]
    assert in_file == lines  # the same lines, whole
    for r in lines:
        assert r["peer"].startswith("ipv4:127.0.0.1:") and r["level"] in ("info", "warning"), r
        assert "client" not in r  # no mutual TLS here
    listed, ok, broken, activate, rollback, validate, _, intruder, anonymous = lines
    assert listed["token"] == "valid" and listed["outcome"] == "OK"
    assert ok["label"] == "spring sale" and ok["hash"] == deployed and ok["outcome"] == "OK"
    assert ok["live_before"] == first.hash and ok["live_after"] == deployed
    assert broken["label"] == "broken" and broken["outcome"] == "INVALID_ARGUMENT"
    assert "a.offer:1:" in broken["error"] and broken["live_before"] == broken["live_after"] == deployed
    assert broken["level"] == "warning"
    assert activate == {**activate, "hash": first.hash, "label": first.label, "live_before": deployed,
                        "live_after": first.hash, "outcome": "OK"}
    assert rollback == {**rollback, "hash": deployed, "label": "spring sale", "live_before": first.hash,
                        "live_after": deployed, "outcome": "OK"}
    assert validate["hash"] == lang.check(EXAMPLE).hash and "live_before" not in validate
    assert intruder == {**intruder, "token": "wrong", "label": "intruder", "outcome": "UNAUTHENTICATED",
                        "live_before": deployed, "live_after": deployed}
    assert "admin token" in intruder["error"]
    assert anonymous["token"] == "missing" and anonymous["outcome"] == "UNAUTHENTICATED"


def test_the_audit_line_in_a_plain_log_and_the_client_certificate_under_mutual_tls(tmp_path, certs, caplog):
    caplog.set_level(logging.INFO, "offerd.audit")
    server = Running(str(tmp_path / "data"), tls_cert=certs["server.pem"], tls_key=certs["server.key"],
                     client_ca=certs["ca.pem"])
    creds = grpc.ssl_channel_credentials(open(certs["ca.pem"], "rb").read(), open(certs["client.key"], "rb").read(),
                                         open(certs["client.pem"], "rb").read())
    try:
        with Client(server.target, credentials=creds, timeout=30) as c:
            digest = c.deploy({**EXAMPLE, "99.offer": EXTRA}, label="tls").hash
            with pytest.raises(grpc.RpcError):
                c.activate("f" * 64)
    finally:
        server.stop()
    records = [r for r in caplog.records if r.name == "offerd.audit"]
    assert [r.fields["client"] for r in records] == ["CN=client"] * 2
    assert records[0].fields["token"] == "not required"
    text = records[0].getMessage()
    assert text.startswith("Deploy by ipv4:127.0.0.1:") and ", token not required, client CN=client, label 'tls', " \
        f"version {digest[:12]}, live " in text and text.endswith(f" -> {digest[:12]}: OK")
    assert records[1].getMessage().endswith(": NOT_FOUND (no catalog version " + "f" * 64 + ")")


def test_an_audit_log_that_cannot_be_opened_stops_the_start_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--data", str(tmp_path), "--audit-log", str(tmp_path / "missing" / "audit.jsonl")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("argument --audit-log: cannot open the audit log "
                            f"{tmp_path / 'missing' / 'audit.jsonl'}: No such file or directory"), err
    assert "Traceback" not in "\n".join(err)


def test_what_a_caller_sent_cannot_start_a_line_of_its_own_in_a_plain_log(tmp_path, caplog):
    """A hash with a newline, sent without a token, once forged a second line in the plain log."""
    caplog.set_level(logging.INFO, "offerd.audit")
    server = Running(str(tmp_path / "data"), admin_token=TOKEN)
    try:
        with Client(server.target, timeout=30) as c:
            with pytest.raises(grpc.RpcError):
                c.activate("ab\nE1205 07:40:20.669861 1 forged.cc:1] root logged in")
        with Client(server.target, admin_token=TOKEN, timeout=30) as c:
            with pytest.raises(grpc.RpcError):
                c.activate("cd\r\nforged")
    finally:
        server.stop()
    texts = [r.getMessage() for r in caplog.records if r.name == "offerd.audit"]
    assert len(texts) == 2
    assert all("\n" not in t and "\r" not in t for t in texts), texts
    assert "version ab\\nE1205 07:," in texts[0] and "UNAUTHENTICATED" in texts[0]
    assert "version cd\\r\\nforged" in texts[1]
