"""protos/ checked by buf (buf.yaml): `buf lint` (STANDARD rules, the exceptions there) and
`buf breaking` against the protos of the previous commit on main; and each check shown to
fail on a deliberate violation. buf comes from npm (`make node_modules/.bin/buf`)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUF = os.path.join(ROOT, "node_modules", ".bin", "buf")
PROTO = os.path.join("protos", "offerd", "v1", "offerd.proto")

needs_buf = pytest.mark.skipif(not os.path.exists(BUF), reason="buf is not installed: `make node_modules/.bin/buf`")


def buf(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([BUF, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def workspace(into: str, proto: str | None = None) -> str:
    """A copy of buf.yaml and protos/ under `into` (with `proto` as offerd.proto's text)."""
    os.makedirs(into, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "buf.yaml"), into)
    shutil.copytree(os.path.join(ROOT, "protos"), os.path.join(into, "protos"))
    if proto is not None:
        with open(os.path.join(into, PROTO), "w") as f:
            f.write(proto)
    return into


def current_proto() -> str:
    with open(os.path.join(ROOT, PROTO)) as f:
        return f.read()


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def baseline() -> tuple[str | None, str]:
    """The commit whose protos the working tree's are checked against, and why it, or None
    and why there is none. On main (HEAD in main's history): the commit before HEAD, so a
    commit is checked against the one it follows. On another branch: where it left main, so
    the branch's own changes are checked, not main's newer ones it has not merged."""
    if git("rev-parse", "--git-dir").returncode:
        return None, "not a git checkout"
    main = next((ref for ref in ("main", "origin/main")
                 if git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0), None)
    if main is None:
        return None, "no main branch in this clone (fetch it: git fetch origin main)"
    if git("merge-base", "--is-ancestor", "HEAD", main).returncode == 0:
        previous = git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
        if previous.returncode:
            return None, "the commit before HEAD is not in this clone (shallow? git fetch --deepen=1)"
        return previous.stdout.strip(), f"the commit before HEAD on {main}"
    base = git("merge-base", "HEAD", main)
    if base.returncode:
        return None, f"this branch and {main} share no commit in this clone (shallow? git fetch --unshallow)"
    return base.stdout.strip(), f"where this branch left {main}"


def protos_at(commit: str, into: str) -> bool:
    """protos/ as at `commit`, with today's buf.yaml, under `into`; False if it had none."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "protos"], cwd=ROOT, capture_output=True,
                             timeout=60)
    if archive.returncode:
        return False
    os.makedirs(into)
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True, timeout=60)
    shutil.copy(os.path.join(ROOT, "buf.yaml"), into)
    return True


def rules(result: subprocess.CompletedProcess) -> set[str]:
    """The rule names of buf's findings (--error-format=json lines)."""
    return set(re.findall(r'"type":"([A-Z_]+)"', result.stdout))


@needs_buf
def test_the_protos_pass_buf_lint():
    got = buf("lint", "--error-format=json", cwd=ROOT)
    assert got.returncode == 0, got.stdout + got.stderr


@needs_buf
def test_buf_lint_fails_on_a_violation(tmp_path):
    bad = current_proto() + "\nmessage bad_name {\n  string SomeField = 1;\n}\n"
    got = buf("lint", "--error-format=json", cwd=workspace(str(tmp_path / "ws"), bad))
    assert got.returncode != 0
    assert rules(got) == {"MESSAGE_PASCAL_CASE", "FIELD_LOWER_SNAKE_CASE"}, got.stdout


@needs_buf
def test_no_breaking_change_since_the_previous_commit_on_main(tmp_path):
    commit, why = baseline()
    if commit is None:
        pytest.skip(f"no previous commit to compare protos/ with: {why}")
    if not protos_at(commit, str(tmp_path / "base")):
        pytest.skip(f"{commit[:12]} ({why}) has no protos/")
    got = buf("breaking", "--error-format=json", "--against", str(tmp_path / "base"), cwd=ROOT)
    assert got.returncode == 0, f"against {commit[:12]} ({why}):\n{got.stdout}{got.stderr}"


@needs_buf
def test_buf_breaking_fails_on_a_deleted_field_and_a_renamed_one(tmp_path):
    proto = current_proto()
    changed = proto.replace("  bool explain_all = 12;\n", "").replace("string request_id = 11;",
                                                                       "string request_key = 11;")
    assert changed.count("\n") == proto.count("\n") - 1
    got = buf("breaking", "--error-format=json", "--against", workspace(str(tmp_path / "base")),
              cwd=workspace(str(tmp_path / "new"), changed))
    assert got.returncode != 0
    assert {"FIELD_NO_DELETE", "FIELD_SAME_NAME", "FIELD_SAME_JSON_NAME"} <= rules(got), got.stdout
