"""Packaging as a new user meets it: the files of a fresh clone built into an sdist and a wheel,
the wheel installed into a new venv, its `offerd` serving and deciding; and the container's
command line (read from the Dockerfile) run with that venv, probed and stopped as Docker would."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.version import Version
import dockerfile
from served import ADULT, free_port

from offerd.client import Client

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("offerd/v1/offerd_pb2.py", "offerd/v1/offerd_pb2_grpc.py")
CART = {"page": "cart", "device": "desktop"}  # with ADULT's cart_total, free_shipping is offered
# a new user's environment: nothing pointing Python at this checkout (PYTHONPATH=src would
# make the new venv import the source instead of the wheel)
USER_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
            and not k.startswith("OFFERD_")}


def _run(argv, log: Path, **kw) -> None:
    with open(log, "w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=USER_ENV, **kw)
    assert done.returncode == 0, f"{shlex.join(map(str, argv))} failed:\n{log.read_text()[-4000:]}"


def fresh_clone(dest: Path) -> None:
    """The files a clone would have: everything tracked or new, nothing git ignores (no .venv,
    no generated *_pb2*.py, no var/). A copy of `git ls-files` rather than `git clone`, so that
    work not yet committed is built too; in CI, which runs on a fresh clone, the two are the same."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if not os.path.lexists(src):  # deleted in the work tree, not yet in the index
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no fresh clone to build from")
    tmp = tmp_path_factory.mktemp("packaging")
    clone, dist, venv = tmp / "clone", tmp / "dist", tmp / "venv"
    started = time.monotonic()
    fresh_clone(clone)
    assert not list(clone.glob("src/offerd/v1/*_pb2*")), "generated code would be in a fresh clone"
    # an sdist, then the wheel built from that sdist (build's default): both with build isolation
    _run([sys.executable, "-m", "build", "--outdir", dist, clone], tmp / "build.log")
    _run([sys.executable, "-m", "venv", venv], tmp / "venv.log")
    (wheel,) = dist.glob("offerd-*.whl")
    _run([venv / "bin" / "pip", "install", wheel], tmp / "install.log")  # dependencies from the registry
    print(f"\nfresh clone to installed wheel: {time.monotonic() - started:.1f} s")
    (sdist,) = dist.glob("offerd-*.tar.gz")
    where = subprocess.run([venv / "bin" / "python", "-c", "import offerd.client, offerd.v1.offerd_pb2 as m; "
                            "print(m.__file__)"], env=USER_ENV, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), f"the venv imports offerd from {where.stdout}"
    return SimpleNamespace(wheel=wheel, sdist=sdist, bin=venv / "bin", tmp=tmp)


def _serving(target: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            assert proc.poll() is None, f"the server ended ({proc.returncode}):\n{log.read_text()[-4000:]}"
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, f"not SERVING on {target} after {timeout} s:\n{log.read_text()[-4000:]}"
            time.sleep(0.1)


def _health(target: str) -> int | None:
    """The health status, None if the server does not answer."""
    with grpc.insecure_channel(target) as ch:
        try:
            return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _lower_bound(requirement: str) -> Version:
    return min(Version(s.version) for s in Requirement(requirement).specifier if s.operator in (">=", "=="))


def test_a_fresh_clone_builds_an_sdist_and_a_wheel_that_install_and_serve(installed, tmp_path):
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        assert set(GENERATED) <= names, "the wheel has no gRPC code: `import offerd.client` would fail"
        assert {"offerd/examples/catalog/00_schema.offer", "offerd/lang/grammar.lark"} <= names
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
        pb2 = whl.read("offerd/v1/offerd_pb2.py").decode()
        pb2_grpc = whl.read("offerd/v1/offerd_pb2_grpc.py").decode()
        metadata = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {f"src/{g}" for g in GENERATED} | {"protos/offerd/v1/offerd.proto", "setup.py", "LICENSE"} <= members

    # the generated code checks the runtime's versions when imported: the wheel must ask for at least those
    requires = dict(re.findall(r"^Requires-Dist: (grpcio|protobuf)\b(.*)$", metadata, re.M))
    made = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", pb2)
    assert made, "offerd_pb2.py no longer checks the protobuf runtime as expected: update this test"
    protobuf_made = Version(".".join(made.groups()))
    assert _lower_bound("protobuf" + requires["protobuf"]) >= protobuf_made
    assert Version(f"{protobuf_made.major + 1}") not in Requirement("protobuf" + requires["protobuf"]).specifier
    grpc_made = Version(re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", pb2_grpc).group(1))
    assert _lower_bound("grpcio" + requires["grpcio"]) >= grpc_made

    offerd = str(installed.bin / "offerd")
    port = free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([offerd, "serve", "--listen", target, "--data", tmp_path / "data", "--workers", "1",
                                 "--drain", "0"], stdout=out, stderr=subprocess.STDOUT, env=USER_ENV,
                                start_new_session=True)
    try:
        _serving(target, proc, log)
        attrs = [a for k, v in ADULT.items() for a in ("--attr", f"{k}={v}")]
        ctx = [a for k, v in CART.items() for a in ("--context", f"{k}={v}")]
        answer = subprocess.run([offerd, "decide", "web_home", "alice", *attrs, *ctx, "--server", target, "--json"],
                                env=USER_ENV, capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, answer.stderr
        (space,) = json.loads(answer.stdout)["spaces"]
        offers = {p["offer"]: p for p in space["propositions"]}
        assert offers["free_shipping"]["content"]["title"] == "Free shipping on this order"
        assert re.fullmatch(r"[0-9a-f]{32}", offers["free_shipping"]["id"])  # recorded in the store
        # the address from the environment, as the README says
        env = {**USER_ENV, "OFFERD_SERVER": target}
        again = subprocess.run([offerd, "record", offers["free_shipping"]["id"], "presented"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        _stop(proc)


# --- the container --------------------------------------------------------------------------


def test_the_container_command_serves_probes_and_stops_on_its_stop_signal(installed, tmp_path):
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run([hadolint, dockerfile.PATH], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored), "the build context would carry a checkout's data"

    stage = dockerfile.final_stage()
    env = dockerfile.environment(stage)
    user = stage["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "USER: a numeric non-root id (runAsNonRoot checks it)"
    assert json.loads(stage["VOLUME"][0]) == [env["OFFERD_DATA"]] == ["/data"]
    listen_port, metrics_port = env["OFFERD_LISTEN"].rsplit(":", 1)[1], env["OFFERD_METRICS"].rsplit(":", 1)[1]
    assert sorted(stage["EXPOSE"][0].split()) == sorted([listen_port, metrics_port])
    stop_signal = signal.Signals[stage["STOPSIGNAL"][0]]
    assert stop_signal == signal.SIGTERM
    options, _, check = stage["HEALTHCHECK"][0].partition("CMD ")
    check = json.loads(check)
    assert check[check.index("--server") + 1] == f"127.0.0.1:{listen_port}"
    command = json.loads(stage["ENTRYPOINT"][0]) + json.loads(stage["CMD"][0])

    # the container's environment, with its addresses on loopback and its volume in a tmp folder
    port, metrics = free_port(), free_port()
    env.update(OFFERD_LISTEN=f"127.0.0.1:{port}", OFFERD_METRICS=f"127.0.0.1:{metrics}",
               OFFERD_DATA=str(tmp_path / "data"), PATH=f"{installed.bin}{os.pathsep}{os.environ['PATH']}")
    assert not [k for k, v in env.items() if "0.0.0.0" in v], "a test listens on loopback only"
    run_env = USER_ENV | env
    target = env["OFFERD_LISTEN"]
    (tmp_path / "data").mkdir()
    log = tmp_path / "container.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(installed.bin / command[0]), *command[1:]], env=run_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _serving(target, proc, log)
        with Client(target) as c:
            d = c.decide(["web_home"], "bob", attributes=ADULT, context=CART)
        assert "free_shipping" in [p.offer for p in d.spaces[0].propositions]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as r:
            assert "offerd_decisions_total" in r.read().decode()

        # the HEALTHCHECK as Docker runs it, once the venv's offerd has the command it names
        probe = [str(installed.bin / check[0]), *[target if a == f"127.0.0.1:{listen_port}" else a for a in check[1:]]]
        has_it = subprocess.run([probe[0], check[1], "--help"], env=USER_ENV, capture_output=True,
                                timeout=60).returncode == 0
        if has_it:
            done = subprocess.run(probe, env=USER_ENV, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stdout + done.stderr

        proc.send_signal(stop_signal)
        deadline = time.monotonic() + 2  # the drain (OFFERD_DRAIN, 3 s by default) has begun: NOT_SERVING
        while _health(target) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "not NOT_SERVING (draining, still answering) after the stop signal"
            time.sleep(0.05)
        if has_it:
            assert subprocess.run(probe, env=USER_ENV, capture_output=True, timeout=30).returncode == 1
        assert proc.wait(30) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        _stop(proc)
