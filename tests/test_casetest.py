"""`offerd test`: catalog tests beside a catalog, run in process against a real store per
case. The shipped example tests pass through the real command; failures show what was
expected, what came and the explain; bad test files are one line and exit 2; history is
really written (it changes the answer)."""
from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from offerd import lang
from offerd.authoring.cases import CaseError, files_in, read
from offerd.authoring.runner import Runner, junit, summary
from offerd.cli import main

EXAMPLE = pathlib.Path(__file__).parent.parent / "src" / "offerd" / "examples" / "catalog"
# shared by the cases below: ann, gold, on the cart page (free shipping 15, the upgrade 11.2)
HEAD = """
[defaults]
time = 2026-11-24T10:00:00+01:00
spaces = ["web_home"]
contact = { id = "ann", age = 34, country = "FR", segment = "gold", cart_total = 120.0 }
context = { page = "cart", device = "desktop" }
"""
FAILING = HEAD + """
[[case]]
name = "wrong order"
expect.web_home = ["gold_upgrade", "free_shipping"]

[[case]]
name = "wrong content"
expect_content.web_home.gold_upgrade.url = "https://example.com/gold?c=IT"

[[case]]
name = "wrong kind"
history = [{ offer = "gold_upgrade", space = "web_home", at = 2026-11-20T10:00:00+01:00, status = "rejected" }]
expect_explain.web_home.gold_upgrade = "capped"

[[case]]
name = "right"
expect.web_home = ["free_shipping", "gold_upgrade"]
"""


def offerd(*args):
    return subprocess.run([sys.executable, "-m", "offerd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def catalog():
    return lang.check(lang.read_dir(str(EXAMPLE)))


@pytest.fixture(scope="module")
def runner(catalog):
    with Runner(catalog) as r:
        yield r


@pytest.fixture
def folder(tmp_path):
    """A copy of the example catalog without its tests."""
    shutil.copytree(EXAMPLE, tmp_path / "c", ignore=shutil.ignore_patterns("*.test.toml"))
    return tmp_path / "c"


def cases_of(tmp_path, catalog, text: str):
    (tmp_path / "x.test.toml").write_text(text)
    return read(str(tmp_path), catalog, ["x.test.toml"])


def test_the_shipped_tests_pass_through_the_command(tmp_path, catalog):
    shipped = read(str(EXAMPLE), catalog)
    assert len(shipped) >= 25 and len(files_in(str(EXAMPLE))) == 4
    r = offerd("test", EXAMPLE, "--junit", tmp_path / "j.xml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(shipped)} passed in " in r.stdout.splitlines()[-1] and "failed" not in r.stdout
    assert "sms.test.toml " + "." * sum(c.file == "sms.test.toml" for c in shipped) in r.stdout
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (str(len(shipped)), "0", "0")
    assert {c.get("name") for c in suite.iter("testcase")} == {c.name for c in shipped}


def test_failures_show_expected_and_got_and_the_explain_and_fail_the_run(folder, tmp_path):
    (folder / "shop.test.toml").write_text(FAILING)
    r = offerd("test", folder, "--junit", tmp_path / "j.xml")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "shop.test.toml FFF." in out and out.splitlines()[-1].strip("= ").startswith("1 passed, 3 failed in ")
    order = out[out.index("shop.test.toml::wrong order"):out.index("shop.test.toml::wrong content")]
    assert "expected: gold_upgrade, free_shipping\n  got:      free_shipping, gold_upgrade" in order
    assert "gold_upgrade   won: rank 2" in order or "gold_upgrade    won: rank 2" in order
    assert "birthday_treat" not in order  # only the explain of the offers that differ
    content = out[out.index("shop.test.toml::wrong content"):out.index("shop.test.toml::wrong kind")]
    assert ('web_home: gold_upgrade.url\n  expected: "https://example.com/gold?c=IT"\n'
            '  got:      "https://example.com/gold?c=FR"') in content
    kind = out[out.index("shop.test.toml::wrong kind"):]
    assert "expected: capped (cap)\n  got:      suppressed (suppress), rule 20_loyalty.offer:" in kind
    assert "suppressed, by offer gold_upgrade at 20_loyalty.offer:" in kind and "suppress 30d after rejected" in kind
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "3", "0")
    failed = {c.get("name"): c.find("failure") for c in suite.iter("testcase")}
    assert failed["right"] is None and "suppress 30d after rejected" in failed["wrong kind"].text
    assert "expected: gold_upgrade, free_shipping" in \
        failed["wrong order"].get("message")


@pytest.mark.parametrize("text, said", [
    ("[[case]]\nname = \"a\"\ntime = 2026-11-24T10:00:00Z\nexpect.web_home = [\n",
     "x.test.toml:4: error: not valid TOML: "),
    (HEAD + "[[case]]\nname = \"a\"\nexpect.web_home = [\"gold_upgrde\"]\n",
     "x.test.toml:9: error: expect.web_home: unknown offer 'gold_upgrde'; did you mean gold_upgrade?"),
    ("[[case]]\nname = \"a\"\ntime = 2026-11-24T10:00:00\nexpect.web_home = []\n",
     "x.test.toml:3: error: time 2026-11-24T10:00:00 has no timezone"),
    (HEAD + "[[case]]\nname = \"a\"\nexpct.web_home = []\n",
     "x.test.toml:9: error: unknown key 'expct' in a [[case]]; did you mean expect?"),
    (HEAD + "[[case]]\nname = \"a\"\nhistory = [{ offer = \"welcome\", space = \"web_home\", "
            "at = 2026-11-20T10:00:00Z, status = \"acepted\" }]\n",
     "x.test.toml:9: error: unknown status 'acepted'; did you mean accepted?"),
    (HEAD + "[[case]]\nname = \"a\"\nexpect = {}\n",
     "x.test.toml:8: error: case 'a' expects nothing: give expect, expect_content or expect_explain"),
], ids=["toml syntax", "unknown offer", "naive time", "unknown key", "unknown status", "no expectation"])
def test_a_bad_test_file_is_one_line_and_exit_2(folder, capsys, text, said):
    (folder / "x.test.toml").write_text(text)
    assert main(["test", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{folder}/{said}"), err


def test_no_test_files_or_no_case_selected_is_exit_5_and_k_selects(folder, capsys):
    assert main(["test", str(folder)]) == 5
    assert capsys.readouterr().err == f"offerd: no *.test.toml files in {folder}: write the catalog's tests beside " \
                                      "its *.offer files\n"
    (folder / "shop.test.toml").write_text(FAILING)
    assert main(["test", str(folder), "-k", "RIGHT"]) == 0  # any case; the others deselected
    out = capsys.readouterr().out
    assert "shop.test.toml .\n" in out and "1 passed, 3 deselected in " in out
    assert main(["test", str(folder), "-k", "nothing like it"]) == 5
    assert capsys.readouterr().err == "offerd: no case matches -k 'nothing like it' (of 4 cases)\n"


def test_history_is_written_and_changes_the_answer(tmp_path, catalog, runner):
    """The same expectation without history, then with the history that caps or suppresses
    the upgrade (at the proposition's time, the status at its own), then with it too old."""
    past = {
        "none": "",
        "capped": "history = [{ offer = \"gold_upgrade\", space = \"newsletter\", at = 2026-11-20T10:00:00Z, count = 3 }]",
        "rejected": "history = [{ offer = \"gold_upgrade\", space = \"web_home\", at = 2026-11-10T10:00:00Z, "
                    "status = \"rejected\", status_at = 2026-11-11T10:00:00Z }]",
        "rejected long ago": "history = [{ offer = \"gold_upgrade\", space = \"web_home\", at = 2026-09-01T10:00:00Z, "
                             "status = \"rejected\", status_at = 2026-10-20T10:00:00Z }]",
        "rejected after": "history = [{ offer = \"gold_upgrade\", space = \"web_home\", at = 2026-09-01T10:00:00Z, "
                          "status = \"rejected\", status_at = 2026-11-20T10:00:00Z }]",
    }
    text = HEAD.replace('"cart"', '"home"') + "".join(
        f"[[case]]\nname = \"{name}\"\n{h}\nexpect.web_home = [\"gold_upgrade\"]\n" for name, h in past.items())
    results = {c.name: runner.run(c) for c in cases_of(tmp_path, catalog, text)}
    outcome = {name: r.outcome for name, r in results.items()}
    assert outcome == {"none": "passed", "capped": "failed", "rejected": "failed",
                       "rejected long ago": "passed", "rejected after": "failed"}
    assert "capped, by offer gold_upgrade" in results["capped"].explain
    assert "suppressed, by offer gold_upgrade" in results["rejected after"].explain  # reported at status_at


def test_a_case_the_store_cannot_hold_is_an_error_not_a_failure(tmp_path, catalog):
    (case,) = cases_of(tmp_path, catalog, HEAD + "[[case]]\nname = \"a\"\nexpect.web_home = []\n")
    (tmp_path / "a-file").write_text("")
    with Runner(catalog) as r:
        r.close()  # the folder it made goes now: close() below removes the one set here
        r.folder = str(tmp_path / "a-file")  # where its stores go: a file, not a folder
        result = r.run(case)
    assert result.outcome == "error" and result.letter == "E" and "cannot create" in result.problems[0]
    assert summary([result], 0.5) == "0 passed, 1 error in 0.50s"


def test_read_reports_every_mistake_of_every_file(tmp_path, catalog):
    (tmp_path / "a.test.toml").write_text(HEAD + "[[case]]\nname = \"a\"\nspaces = [\"webhome\"]\n"
                                          "[[case]]\nname = \"a\"\nexpect.web_home = []\n")
    (tmp_path / "b.test.toml").write_text("[[case]]\nname = \"b\"\ntime = \"2026-11-24\"\nexpect.sms = []\n")
    with pytest.raises(CaseError) as e:
        read(str(tmp_path), catalog)
    assert e.value.lines == [
        f"{tmp_path}/a.test.toml:9: error: unknown space 'webhome'; did you mean web_home?",
        f"{tmp_path}/a.test.toml:10: error: a second case named 'a' (the first is at line 7)",
        f"{tmp_path}/b.test.toml:3: error: time '2026-11-24' is a date: give a date and time with an offset, such as "
        "2026-11-24T10:00:00+01:00"]


def test_junit_is_well_formed_whatever_the_names_and_texts_hold(tmp_path, catalog, runner):
    """TOML strings may hold control characters, which XML 1.0 cannot carry even escaped:
    they are written as \\u escapes; `]]>`, `<` and `&` are escaped as XML escapes them."""
    text = HEAD + ('[[case]]\nname = "bell \\u0007 esc \\u001b[31m ]]> <&>"\n'
                   'expect_content.web_home.free_shipping.title = "x\\u0001y ]]>"\n')
    (case,) = cases_of(tmp_path, catalog, text)
    result = runner.run(case)
    assert result.outcome == "failed"
    junit(str(tmp_path / "j.xml"), [result], 0.1)
    (testcase,) = ET.parse(tmp_path / "j.xml").getroot().iter("testcase")
    assert testcase.get("name") == "bell \\u0007 esc \\u001b[31m ]]> <&>"
    failure = testcase.find("failure")
    assert 'expected: "x\\u0001y ]]>"' in failure.text and "\x07" not in failure.text + failure.get("message")


def test_a_name_s_control_characters_are_shown_escaped_not_sent_to_the_terminal(folder, capsys):
    (folder / "shop.test.toml").write_text(HEAD + '[[case]]\nname = "red \\u001b[31m\\nnext line"\n'
                                           'expect.web_home = []\n')
    assert main(["test", str(folder), "-v"]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nnext line" not in out
    assert out.count("red \\u001b[31m\\u000anext line") == 3  # the -v line, the failure's head and first line


def test_junit_gets_a_new_files_usual_mode_and_keeps_an_existing_files(tmp_path):
    """The report is written to a temporary file renamed over it: with the temporary file's
    mode (0600) a CI's other users (an agent reading a container's results) could not read it."""
    umask = os.umask(0o022)
    try:
        junit(str(tmp_path / "new.xml"), [], 0.1)
        assert stat.S_IMODE(os.stat(tmp_path / "new.xml").st_mode) == 0o644
        (tmp_path / "old.xml").write_text("")
        os.chmod(tmp_path / "old.xml", 0o640)
        junit(str(tmp_path / "old.xml"), [], 0.1)
        assert stat.S_IMODE(os.stat(tmp_path / "old.xml").st_mode) == 0o640
    finally:
        os.umask(umask)
