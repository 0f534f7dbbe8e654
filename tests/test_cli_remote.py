"""The commands that talk to a server, run as a user runs them against real servers: TLS and
mutual TLS, the admin token, versions named by hash prefixes (activate, rollback, and the
API's Activate and Simulate), and health."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from offerd import lang
from offerd.cli.remote import SHOWN_DIGITS, shown_digits
from offerd.client import Client
from offerd.domain import catalog_hash
from offerd.examples import CATALOG

from served import ADULT, Running, Served

EXAMPLE = lang.read_dir(CATALOG)


def offerd(*args, env=None):
    return subprocess.run([sys.executable, "-m", "offerd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def one_line_failure(r, *words):
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_client_commands_reach_a_tls_server_with_its_ca_and_only_so(tmp_path, certs):
    s = Running(str(tmp_path / "data"), tls_cert=certs["server.pem"], tls_key=certs["server.key"])
    ca = ["--server", s.target, "--tls-ca", certs["ca.pem"]]
    try:
        r = offerd("health", *ca)
        assert (r.returncode, r.stdout) == (0, "SERVING\n"), r.stderr
        r = offerd("decide", "web_home", "tls-cli", *[f"--attr={k}={v}" for k, v in ADULT.items()], "--dry-run", *ca)
        assert r.returncode == 0 and "web_home: 1 proposition (dry run)" in r.stdout, r.stderr
        one_line_failure(offerd("health", "--server", s.target), "UNAVAILABLE", "give --tls-ca")  # plain text
        # a client trusting another certificate (the client's, no CA) refuses the server
        one_line_failure(offerd("versions", "--server", s.target, "--tls-ca", certs["client.pem"]), "UNAVAILABLE")
        # the certificate names 127.0.0.1: another name expected of it is refused, the right one accepted
        one_line_failure(offerd("health", *ca, "--tls-server-name", "other.test"), "UNAVAILABLE")
        r = offerd("health", "--server", f"localhost:{s.port}", "--tls-ca", certs["ca.pem"])
        one_line_failure(r, "Hostname Verification")
        r = offerd("health", "--server", f"localhost:{s.port}", "--tls-ca", certs["ca.pem"],
                   "--tls-server-name", "127.0.0.1")
        assert r.returncode == 0 and r.stdout == "SERVING\n", r.stderr
        r = offerd("versions", "--server", s.target, env={"OFFERD_TLS_CA": certs["ca.pem"]})
        assert r.returncode == 0 and r.stdout.startswith("* "), r.stderr
        with Client(s.target, tls_ca=certs["ca.pem"]) as c:
            assert c.health() == "SERVING"
        with pytest.raises(ValueError, match="cannot read the CA certificate .*missing.pem"):
            Client(s.target, tls_ca=str(tmp_path / "missing.pem"))
        (tmp_path / "text.pem").write_text("not a certificate\n")
        with pytest.raises(ValueError, match="text.pem is not a PEM file"):
            Client(s.target, tls_ca=str(tmp_path / "text.pem"))
    finally:
        s.stop()


def test_client_commands_reach_an_mtls_server_with_a_client_certificate_only(tmp_path, certs):
    s = Running(str(tmp_path / "data"), tls_cert=certs["server.pem"], tls_key=certs["server.key"],
                client_ca=certs["ca.pem"])
    ca = ["--server", s.target, "--tls-ca", certs["ca.pem"]]
    mine = ["--tls-cert", certs["client.pem"], "--tls-key", certs["client.key"]]
    try:
        one_line_failure(offerd("health", *ca), "UNAVAILABLE")  # no client certificate
        r = offerd("health", *ca, *mine)
        assert (r.returncode, r.stdout) == (0, "SERVING\n"), r.stderr
        r = offerd("record", "0" * 32, "accepted", *ca, *mine)
        one_line_failure(r, "NOT_FOUND")  # reached the service: an unknown proposition
        r = offerd("versions", "--server", s.target, env={"OFFERD_TLS_CA": certs["ca.pem"],
                                                            "OFFERD_TLS_CLIENT_CERT": certs["client.pem"],
                                                            "OFFERD_TLS_CLIENT_KEY": certs["client.key"]})
        assert r.returncode == 0 and r.stdout.startswith("* "), r.stderr
        r = offerd("health", *ca, "--tls-cert", certs["client.pem"])
        assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr
        with Client(s.target, tls_ca=certs["ca.pem"], tls_cert=certs["client.pem"], tls_key=certs["client.key"]) as c:
            assert c.decide(["web_home"], "mtls", attributes=ADULT).spaces[0].propositions
        with Client(s.target, tls_ca=certs["ca.pem"], timeout=5) as c, pytest.raises(grpc.RpcError) as e:
            c.health()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        s.stop()


def test_the_admin_token_comes_from_its_flag_or_its_variable(tmp_path):
    s = Running(str(tmp_path / "data"), admin_token="s3cret")
    try:
        one_line_failure(offerd("versions", "--server", s.target), "UNAUTHENTICATED")
        assert offerd("versions", "--server", s.target, "--admin-token", "s3cret").returncode == 0
        r = offerd("rollback", "--server", s.target, env={"OFFERD_ADMIN_TOKEN": "s3cret"})
        one_line_failure(r, "FAILED_PRECONDITION", "nothing to roll back to")
    finally:
        s.stop()


def _twins() -> tuple[dict, dict]:
    """Two catalogs whose hashes share their first 4 hex digits."""
    seen = {}
    for i in range(100_000):
        files = dict(EXAMPLE, **{"zz.offer": f"let twin = {i}\n"})
        prefix = catalog_hash(files)[:4]
        if prefix in seen:
            return seen[prefix], files
        seen[prefix] = files
    raise AssertionError("no two hashes share 4 digits")


def test_versions_are_named_by_unique_prefixes_everywhere(tmp_path):
    a_files, b_files = _twins()
    a, b = catalog_hash(a_files), catalog_hash(b_files)
    s = Running(str(tmp_path / "data"))
    server = ["--server", s.target]
    try:
        with Client(s.target) as c:
            c.deploy(a_files, "a")
            c.deploy(b_files, "b")
        r = offerd("versions", *server)
        listed = [line[2:].split()[0] for line in r.stdout.splitlines()]
        assert len(listed) == 3 and {a[:len(listed[0])], b[:len(listed[0])]} <= set(listed)
        assert len(listed[0]) >= SHOWN_DIGITS and len(set(listed)) == 3, r.stdout

        one_line_failure(offerd("activate", a[:4], *server), "INVALID_ARGUMENT", f"catalog version {a[:4]} is "
                         "ambiguous", a[:12], b[:12], "give more digits")
        unknown = next(p for p in ("fffff", "00000", "77777") if not any(h.startswith(p) for h in listed))
        one_line_failure(offerd("activate", unknown, *server), "NOT_FOUND", f"no catalog version {unknown}")
        one_line_failure(offerd("activate", a[:3], *server), "NOT_FOUND", "a prefix of at least 4")
        r = offerd("activate", a[:12].upper(), *server)
        assert (r.returncode, r.stdout) == (0, f"live: {a}\n"), r.stderr
        r = offerd("versions", *server)
        assert a.startswith(next(line for line in r.stdout.splitlines() if line.startswith("*")).split()[1])
        r = offerd("rollback", *server)
        assert (r.returncode, r.stdout) == (0, f"live: {b}\n"), r.stderr

        with Client(s.target) as c:
            assert c.activate(a[:8]) == a  # the API answers the whole hash
            assert c.schema().catalog == a
            report = list(c.simulate(["web_home"], b'{"id": "p", "age": 30}\n', version=b[:10]))[-1]
            assert b in report.report_json
            with pytest.raises(grpc.RpcError) as e:
                list(c.simulate(["web_home"], b'{"id": "p"}\n', version=a[:4]))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ambiguous" in e.value.details()
    finally:
        s.stop()


def test_shown_digits_grow_until_every_hash_is_told_apart():
    assert shown_digits([]) == SHOWN_DIGITS
    assert shown_digits(["a" * 64, "b" * 64]) == SHOWN_DIGITS
    assert shown_digits(["0" * 20 + "1" * 44, "0" * 20 + "2" * 44, "f" * 64]) == 21


def test_health_says_serving_then_not_serving_while_the_server_drains(tmp_path):
    s = Served(tmp_path / "data", "--workers", "1", "--drain", "60")
    signals = 0
    try:
        r = offerd("health", "--server", s.target)
        assert (r.returncode, r.stdout) == (0, "SERVING\n"), r.stderr
        r = offerd("health", "--server", s.target, "--service", "offerd.v1.DecisionService")
        assert (r.returncode, r.stdout) == (0, "SERVING\n"), r.stderr
        s.proc.send_signal(signal.SIGTERM)
        signals = 1
        deadline = time.monotonic() + 30
        while (r := offerd("health", "--server", s.target)).stdout != "NOT_SERVING\n":
            assert time.monotonic() < deadline, (r.stdout, r.stderr, s.output())
            time.sleep(0.2)
        assert r.returncode == 1
    finally:
        for _ in range(2 - signals):  # the first drains, a second ends the drain; no third, which could
            s.proc.send_signal(signal.SIGTERM)  # land after the server's handlers are gone
            time.sleep(0.1)
        assert s.proc.wait(30) == 0, s.output()
        s.log.close()
