"""Every `offerd` command and subcommand, found by walking the parser (a new one is covered
at once), run as a user runs it with bad input: each must end with one short line (or
argparse's usage and one error line) and a non-zero exit, never a traceback, never the
last-resort "unexpected error" line."""
from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from offerd.cli import build_parser
from offerd.cli.options import walk

from served import Served, free_port

EXAMPLE = pathlib.Path(__file__).parent.parent / "src" / "offerd" / "examples" / "catalog"
ROOT = pathlib.Path("/tmp") / f"offerd-cli-errors-{os.getpid()}"  # made once per run, below
# runtime cases not run for these: they start Redis, HAProxy and shards (tests/test_cluster.py)
STARTS_OTHERS = {("cluster", "local")}
OPTIONAL_SERVER = {("batch",)}  # --server changes what the command does: walked without it, and once with it


def paths() -> dict[str, str]:
    """Files and folders the cases name, made once."""
    p = {k: str(ROOT / k) for k in ("catalog", "unreadable", "pop.jsonl", "not-pem.txt", "a-file", "data", "out")}
    if not ROOT.exists():
        ROOT.mkdir(parents=True)
        shutil.copytree(EXAMPLE, p["catalog"])
        shutil.copytree(EXAMPLE, p["unreadable"])
        (ROOT / "unreadable" / "zz.offer").mkdir()  # a folder where a file must be (tests run as root)
        (ROOT / "pop.jsonl").write_text('{"id": "a", "age": 30}\n')
        (ROOT / "not-pem.txt").write_text("not a certificate\n")
        (ROOT / "a-file").write_text("a file where a folder must be\n")
        atexit.register(shutil.rmtree, ROOT, True)
    return p


P = paths()
CLOSED = f"127.0.0.1:{free_port()}"  # nothing listens there
VALUES = {  # a good value for each required argument, by its dest
    "catalog": P["catalog"], "count": "3", "dest": str(ROOT / "backup-new"), "spaces": "web_home",
    "proposition": "0" * 32, "status": "accepted", "hash": "abcd", "shell": "bash", "space": "web_home",
    "population": P["pop.jsonl"], "out": str(ROOT / "out.jsonl"), "at": "2026-01-01T00:00:00Z",
}
INPUT_FOLDERS = {"catalog", "--catalog", "--compare"}
INPUT_FILES = {"--population", "--cluster", "--tls-ca", "--client-ca"}
OUTPUT_FILES = {"--out", "--json", "--html"}
PORTS = {"--listen", "--metrics"}


def commands():
    """(words, parser) of every command that runs something."""
    return [(list(words), p) for words, p in walk(build_parser()) if p.get_default("fn")]


# a bad value for a typed option whose type would take "bogus" (a file name it creates)
NOT_VALUES = {"--audit-log": str(ROOT / "missing" / "audit.log")}


def options(p) -> dict[str, argparse.Action]:
    return {a.option_strings[-1] if a.option_strings else a.dest: a for a in p._actions if a.help != argparse.SUPPRESS}


def _required(a: argparse.Action) -> bool:
    if a.option_strings:
        return a.required
    return a.nargs not in ("?", "*", argparse.PARSER) and not isinstance(a, argparse._SubParsersAction)


def baseline(words, p) -> list[str]:
    """The command with every required argument given a good value, and what must not
    reach anything real: a closed port for a server, a free port and a tmp folder to serve."""
    argv = list(words)
    for a in p._actions:
        if _required(a) and not a.option_strings:
            assert a.dest in VALUES, f"add a good value for {' '.join(words)} {a.dest} to VALUES"
            argv.append(VALUES[a.dest])
        elif a.option_strings and a.required:
            assert a.dest in VALUES, f"add a good value for {' '.join(words)} {a.option_strings[-1]} to VALUES"
            argv += [a.option_strings[-1], VALUES[a.dest]]
    opts = options(p)
    if "--server" in opts and tuple(words) not in OPTIONAL_SERVER:
        argv += ["--server", CLOSED]
    if "--listen" in opts:
        argv += ["--listen", f"127.0.0.1:{free_port()}"]
    if "--data" in opts:
        argv += ["--data", P["data"]]
    return argv


def cases():
    """(id, argv, env): bad input for every command."""
    out = []
    for words, p in walk(build_parser()):
        if not p.get_default("fn"):  # a command of subcommands, none given
            out.append((" ".join(words or ["offerd"]) + ": no subcommand", list(words), {}))
            continue
        name, base, opts = " ".join(words), baseline(words, p), options(p)
        out.append((f"{name}: unknown option", base + ["--no-such-option"], {}))
        for a in p._actions:
            flag = a.option_strings[-1] if a.option_strings else None
            if _required(a):
                given = [flag, VALUES[a.dest]] if flag else [VALUES[a.dest]]
                i = next(i for i in range(len(base)) if base[i:i + len(given)] == given)
                out.append((f"{name}: no {flag or a.dest}", base[:i] + base[i + len(given):], {}))
            if a.type is not None and a.type is not str:
                value = NOT_VALUES.get(flag, "bogus")
                if flag:
                    out.append((f"{name}: {flag} bogus", base + [flag, value], {}))
                if getattr(a, "env", None):
                    out.append((f"{name}: {a.env}=bogus", base, {a.env: value}))
            env = getattr(a, "env", None)
            if env and (a.choices or isinstance(a, argparse._StoreTrueAction)):
                out.append((f"{name}: {env}=nope", base, {env: "nope"}))  # argparse checks no default
            if a.choices and not isinstance(a, argparse._SubParsersAction):
                if flag:
                    out.append((f"{name}: {flag} not a choice", base + [flag, "nope"], {}))
                else:
                    out.append((f"{name}: {a.dest} not a choice", [x if x != VALUES[a.dest] else "nope" for x in base],
                                {}))
        if tuple(words) in STARTS_OTHERS:
            continue
        for key in opts.keys() & INPUT_FOLDERS:
            for what, value in (("missing", str(ROOT / "missing")), ("a file", P["a-file"]),
                                ("unreadable file", P["unreadable"])):
                argv = [value if x == P["catalog"] else x for x in base] if not key.startswith("-") \
                    else base + [key, value]
                out.append((f"{name}: {key} {what}", argv, {}))
        for key in opts.keys() & INPUT_FILES:
            for what, value in (("missing", str(ROOT / "missing.pem")), ("a folder", P["catalog"]),
                                ("not PEM", P["not-pem.txt"])):
                if what == "not PEM" and not key.startswith(("--tls", "--client")):
                    continue
                out.append((f"{name}: {key} {what}", _replace(base, key, value), {}))
        for key in opts.keys() & OUTPUT_FILES:
            out.append((f"{name}: {key} in a missing folder", _replace(base, key, str(ROOT / "missing" / "x")), {}))
        if "--tls-cert" in opts and "--server" in opts:
            out.append((f"{name}: --tls-cert without --tls-key", base + ["--tls-cert", P["not-pem.txt"]], {}))
            out.append((f"{name}: --tls-cert not PEM", base + ["--tls-cert", P["not-pem.txt"], "--tls-key",
                                                                P["not-pem.txt"]], {}))
        if "--server" in opts and tuple(words) in OPTIONAL_SERVER:
            out.append((f"{name}: server not listening", base + ["--server", CLOSED], {}))
        elif "--server" in opts:
            out.append((f"{name}: server not listening", base, {}))
        if "--dask" in opts:
            out.append((f"{name}: dask scheduler not listening", base + ["--dask", f"tcp://{CLOSED}"], {}))
            out.append((f"{name}: --server not HOST:PORT", base + ["--server", "127.0.0.1:99999"], {}))
        if "--data" in opts:
            out.append((f"{name}: --data a file", _replace(base, "--data", P["a-file"]), {}))
        if "--listen" in opts and "--server" not in opts:
            out.append((f"{name}: --listen not HOST:PORT", _replace(base, "--listen", "nowhere"), {}))
        for key in opts.keys() & PORTS:
            out.append((f"{name}: {key} in use", _replace(base, key, "IN_USE"), {}))
    return out


def _replace(argv, key, value):
    if key in argv:
        i = argv.index(key)
        return argv[:i + 1] + [value] + argv[i + 2:]
    return argv + [key, value]


def run(argv, env=None, timeout=60):
    """`offerd ARGV` in its own session (a server it starts by mistake is killed with it)."""
    proc = subprocess.Popen([sys.executable, "-m", "offerd.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            start_new_session=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"offerd {' '.join(argv)} still ran after {timeout} s:\n{err}") from None
    return proc.returncode, out, err


def assert_short(code, err, argv):
    """A non-zero exit and one line: `offerd...: message`, or argparse's usage then one
    `offerd ...: error: ...` line."""
    where = f"offerd {' '.join(argv)}\n{err}"
    assert code not in (0, None), where
    assert "Traceback" not in err and "unexpected error" not in err, where
    lines = err.rstrip("\n").split("\n")
    if lines[0].startswith("usage:"):
        said = [line for line in lines[1:] if not line.startswith(" ")]
        assert len(said) == 1 and said[0].startswith("offerd") and ": error: " in said[0], where
    else:
        assert len(lines) == 1 and lines[0].startswith("offerd") and len(lines[0]) < 400, where


CASES = cases()
FIXED_ELSEWHERE: dict[str, str] = {}  # id → why it is expected to fail until fixed (strict: once fixed, the marker goes)


@pytest.mark.parametrize("argv,env", [
    pytest.param(argv, env, id=i, marks=[pytest.mark.xfail(strict=True, reason=FIXED_ELSEWHERE[i])]
                 if i in FIXED_ELSEWHERE else []) for i, argv, env in CASES])
def test_bad_input_ends_in_one_line_and_a_failure(argv, env, outcomes, request):
    code, err, argv = outcomes[request.node.callspec.id].result()  # a case's own failure (a hang) fails it alone
    assert_short(code, err, argv)


def _bad_input(argv, env, n):
    """One case, with its own port to listen on and its own data folder: the cases of a
    command share their baseline's, and they run side by side."""
    own = {P["data"]: str(ROOT / f"data-{n}")}
    if "--listen" in argv and argv[argv.index("--listen") + 1].startswith("127.0.0.1:"):
        own[argv[argv.index("--listen") + 1]] = f"127.0.0.1:{free_port()}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        own["IN_USE"] = f"127.0.0.1:{busy.getsockname()[1]}"
        argv = [own.get(a, a) for a in argv]
        code, _, err = run(argv, env)
    return code, err, argv


@pytest.fixture(scope="module")
def outcomes(request):
    """The selected cases, run a few at a time: one by one they took a minute."""
    chosen = {item.callspec.id: item.callspec.params for item in request.session.items
              if item.originalname == "test_bad_input_ends_in_one_line_and_a_failure"}
    with concurrent.futures.ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:
        futures = {i: pool.submit(_bad_input, params["argv"], params["env"], n)
                   for n, (i, params) in enumerate(chosen.items())}
    return futures


def test_the_walk_reaches_every_command_and_every_kind_of_case():
    """The walk sees nested subcommands and makes each kind of case, so a parser change that
    hid commands from it would show here."""
    names = {" ".join(w) for w, _ in commands()}
    assert {"check", "serve", "cluster local", "decide", "activate", "rollback", "health", "completion"} <= names
    ids = {i for i, _, _ in CASES}
    for want in ("cluster: no subcommand", "deploy: catalog missing", "deploy: server not listening",
                 "health: --tls-ca not PEM", "serve: --catalog unreadable file", "batch: no --out",
                 "batch: server not listening", "simulate: dask scheduler not listening",
                 "serve: OFFERD_WORKERS=bogus", "activate: server not listening", "serve: --listen in use"):
        assert want in ids, sorted(ids)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("walk"), "--workers", "1")
    yield s
    assert s.stop() == 0, s.output()


def test_every_client_command_against_a_real_server_fails_in_one_line_or_succeeds(server):
    """The same baseline, now reaching a server: an unknown proposition, an unknown hash
    prefix, nothing to roll back to... each a one-line refusal when it is one."""
    ran = 0
    for words, p in commands():
        if "--server" not in options(p):
            continue
        argv = [server.target if a == CLOSED else a for a in baseline(words, p)]
        code, out, err = run(argv)
        assert "Traceback" not in err and "unexpected error" not in err, (argv, err)
        if code:
            assert_short(code, err, argv)
        ran += 1
    assert ran >= 7
    for argv, want in ((["activate", "zz"], "NOT_FOUND: no catalog version 'zz'"),
                       (["activate", "abcd"], "NOT_FOUND: no catalog version abcd"),
                       (["decide", "nowhere", "x"], "NOT_FOUND"),
                       (["decide", "web_home", "x", "--attr", "age=old"], 'contact.age is an int, and "old"'),
                       (["health", "--service", "no.Such"], "NOT_FOUND")):
        code, _, err = run(argv + ["--server", server.target])
        assert_short(code, err, argv)
        assert want in err, err
