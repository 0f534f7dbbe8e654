"""The `offerd` command, run as a user runs it: a real process, real files."""
import pathlib
import re
import shutil
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).parent.parent / "src" / "offerd" / "examples" / "catalog"


def offerd(*args):
    return subprocess.run([sys.executable, "-m", "offerd.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_check_ok_prints_a_summary():
    r = offerd("check", EXAMPLE)
    assert r.returncode == 0, r.stderr
    # the example's offers end (valid ... to 2027-12-31): after that, a warning says so
    assert re.search(r"ok — 9 offers, 4 spaces, 2 categories, 1 groups, 1 lets, \d+ warnings? ", r.stdout), r.stdout


def test_check_broken_catalog_exits_1_with_every_error(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "c")
    (tmp_path / "c" / "99_broken.offer").write_text(
        "offer broken {\n  spaces web_home, nowhere\n  eligible contact.agee > 1\n}\n")
    r = offerd("check", tmp_path / "c")
    assert r.returncode == 1
    assert "99_broken.offer:2:20: error: unknown space nowhere" in r.stderr
    assert "99_broken.offer:3:12: error: unknown attribute contact.agee" in r.stderr
    assert "hint: did you mean contact.age?" in r.stderr
    assert "99_broken.offer:1:7: error: offer broken gives no title, url for space web_home" in r.stderr
    assert r.stderr.rstrip().endswith("3 errors")


def test_check_warnings_do_not_fail(tmp_path):
    (tmp_path / "a.offer").write_text("space s { limit 1 }\noffer lonely { weight 1 }\n")
    r = offerd("check", tmp_path)
    assert r.returncode == 0
    assert "warning: offer lonely is in no space" in r.stderr
    assert "1 warning " in r.stdout


def test_check_missing_folder():
    r = offerd("check", "/nonexistent/catalog")
    assert r.returncode == 1 and "is not a folder" in r.stderr


def test_compile_show_source_prints_python_that_compiles():
    r = offerd("compile", EXAMPLE, "--space", "web_home", "--show-source", "--explain", "--content")
    assert r.returncode == 0, r.stderr
    assert "def _evaluate(" in r.stdout and "def _explain(" in r.stdout and "def _render_0(" in r.stdout
    compile(r.stdout, "<shown>", "exec")
    assert "# space web_home: 5 offers" in r.stderr


def test_compile_unknown_space_suggests():
    r = offerd("compile", EXAMPLE, "--space", "web_hom")
    assert r.returncode == 2 and "did you mean web_home?" in r.stderr


def test_compile_all_spaces_summary():
    r = offerd("compile", EXAMPLE)
    assert r.returncode == 0
    assert sorted(line.split()[2].rstrip(":") for line in r.stdout.splitlines()) == [
        "callcenter_next", "newsletter", "sms", "web_home"]


def test_serve_refuses_a_bad_number_of_recent_contacts(tmp_path):
    for bad in ("-1", "many", "20000000"):
        r = offerd("serve", "--data", tmp_path, "--recent-contacts", bad)
        assert r.returncode == 2 and "--recent-contacts" in r.stderr and "whole number from 0" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_serve_refuses_a_cluster_file_it_cannot_use_with_what_to_fix(tmp_path):
    good = tmp_path / "cluster.json"
    good.write_text('{"shards": ["127.0.0.1:7001", "127.0.0.1:7002"], "redis": "127.0.0.1:6379", '
                    '"secret": "0123456789abcdef"}')
    cases = [
        (["--cluster", good], "--cluster needs --shard I"),
        (["--shard", "1"], "--shard needs --cluster FILE"),
        (["--cluster", good, "--shard", "2"], "--shard 2 is not in the cluster file"),
        (["--cluster", tmp_path / "missing.json", "--shard", "0"], "cannot read the cluster file"),
    ]
    for text, want in (('{"shards": []}', 'needs "shards"'),
                       ('{"shards": ["127.0.0.1:7001", "127.0.0.1:7002"], "secret": "0123456789abcdef"}',
                        'needs "redis"'),
                       ('{"shards": ["127.0.0.1:7001", "127.0.0.1:7002"], "redis": "127.0.0.1:6379"}',
                        'needs "secret" (or OFFERD_CLUSTER_SECRET)'),
                       ('{"shards": ["nowhere"], "redis": "127.0.0.1:6379"}', "must be HOST:PORT"),
                       ('{"shards": ["127.0.0.1:7001"], "redis": "127.0.0.1:1", "peers": 3}', "unknown keys peers"),
                       ("[not json", "is not JSON")):
        bad = tmp_path / f"bad-{len(cases)}.json"
        bad.write_text(text)
        cases.append((["--cluster", bad, "--shard", "0"], want))
    for args, want in cases:
        r = offerd("serve", "--data", tmp_path / "data", *args)
        assert r.returncode == 2 and want in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_simulate_refuses_a_context_outside_the_schema(tmp_path):
    """The simulation's one context is checked as a request's is: a value outside a closed
    set, or of the wrong type, exits 2 naming the attribute, before any row is decided."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.offer").write_text(
        'schema context { device: string in ["web", "app"]  visits: int }\n'
        'space web { limit 1 }\noffer o { spaces web  eligible context.device != "web" }\n')
    people = tmp_path / "people.jsonl"
    people.write_text('{"id": "p1"}\n')
    r = offerd("simulate", tmp_path / "c", "--space", "web", "--population", people, "--context", "device=tv", "--quiet")
    assert r.returncode == 2, r.stdout
    assert 'context.device: "tv" is not one of "web", "app"' in r.stderr and "Traceback" not in r.stderr
    r = offerd("simulate", tmp_path / "c", "--space", "web", "--population", people, "--context", "visits=many",
               "--quiet")
    assert r.returncode == 2 and "context.visits is an int, and \"many\" is not a whole number" in r.stderr
    r = offerd("simulate", tmp_path / "c", "--space", "web", "--population", people, "--context", "device=app",
               "--quiet")
    assert r.returncode == 0, r.stderr
