"""`offerd fmt`: the layout never changes what a catalog means (checked catalogs and every
space's generated Python compared before and after, for the example, the fixtures and the
fuzz corpus), it is its own fixed point, every comment survives in order, random
expressions and comment placements keep their trees; and the command as a user runs it."""
from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import random
import re
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from offerd import lang
from offerd.authoring.fmt import _concrete, _tokens, format_source
from offerd.cli import main
from offerd.compiler import CompiledSpace
from offerd.lang.catalog import RuleRef
from offerd.lang.diagnostics import Reporter, Span
from offerd.lang.parser import parse, parse_expr

from strategies import SCALE, Gen

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLE = ROOT / "src" / "offerd" / "examples" / "catalog"
FIXTURES = ROOT / "tests" / "fixtures"
FUZZ = ROOT / "tests" / "fuzz_corpus"
TODAY = datetime.date(2026, 11, 23)  # the "no longer valid" warning depends on it


# --- what "the same meaning" is -------------------------------------------------------------

POSITION = re.compile(r"(?<![\w.<>-])[\w.<>-]+\.offer:\d+:\d+|<[\w ]+>:\d+:\d+")


def plain(x):
    """A comparable form of trees and catalogs without positions. Expression nodes compare
    without their spans by design (checked below); a DomainSpec's values and the catalog's
    own records carry spans, replaced here by None. A rule's text, as explain quotes it, is
    the source with whitespace runs made one space: the formatter may add or remove space
    between tokens (`a+b` → `a + b`), so texts compare with all whitespace removed. Brackets,
    operators and names are characters of that text still, so a bracket dropped or moved
    shows in the text as well as in the tree."""
    if isinstance(x, Span):
        return None
    if isinstance(x, RuleRef):
        return ("RuleRef", x.kind, x.owner, "".join(x.text.split()))
    if isinstance(x, lang.Diagnostic):
        return (x.severity, "".join(POSITION.sub("AT", x.message).split()), x.hint)
    if isinstance(x, list | tuple):
        return tuple(plain(i) for i in x)
    if isinstance(x, dict):
        return tuple((plain(k), plain(v)) for k, v in x.items())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        skip = ("sources", "hash", "_lines") if isinstance(x, lang.Catalog) else ()
        return (type(x).__name__,) + tuple(plain(getattr(x, f.name)) for f in dataclasses.fields(x)
                                           if f.compare and f.name not in skip)
    return x


def generated(catalog: lang.Catalog) -> dict:
    """Every part of every space's generated Python, the catalog hash and positions in it
    made neutral, with the constants it runs with and the rules explain names."""
    out = {}
    for name in sorted(catalog.spaces):
        space = CompiledSpace(catalog, name)
        parts = [space.source, space.source_of("explain"), space.source_of("render")]
        if space.ranks_by_bound:
            parts.append(space.source_of("top"))
        parts = [POSITION.sub("AT", re.sub(r"catalog [0-9a-f]{12}", "catalog HASH", p)) for p in parts]
        consts = {k: v for k, v in space.evaluate.__globals__.items() if re.fullmatch(r"_k\d+", k)}
        out[name] = (parts, consts, plain(space.rules))
    return out


def decls(text: str) -> tuple:
    report = Reporter()
    module = parse(text, "f.offer", report)
    assert not report.has_errors, [d.render() for d in report.diagnostics]
    return plain(module.decls)


def comments(text: str) -> list[str]:
    """The comments of ODL text, read by a scan of its own: `#` to the end of the line,
    outside strings."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif c == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(text[i:end].rstrip())
            i = end
        i += 1
    return out


def parses(text: str) -> bool:
    report = Reporter()
    parse(text, "f.offer", report)
    return not report.has_errors


def catalogs() -> list:
    """(id, {name: text}) of every catalog that checks: the example, each fixture file, each
    fuzz corpus file; and (id, {name: text}, False) of the files that parse but do not check."""
    out = [pytest.param({p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.offer"))}, True, id="example")]
    for path in sorted(FIXTURES.rglob("*.offer")) + sorted(FUZZ.rglob("*.offer")):
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not parses(text):
            continue
        try:
            lang.check({path.name: text}, today=TODAY)
            checks = True
        except lang.CatalogError:
            checks = False
        out.append(pytest.param({path.name: text}, checks, id=str(path.relative_to(ROOT / "tests"))))
    return out


CASES = catalogs()


def test_the_corpus_covers_checked_catalogs_and_files_that_only_parse():
    checked = [c for c in CASES if c.values[1]]
    assert len(checked) >= 15 and len(CASES) - len(checked) >= 15, (len(checked), len(CASES))


def test_expression_nodes_compare_without_spans_and_brackets():
    """What the comparison relies on: spacing and redundant brackets leave a tree equal (its
    spans differ), a different grouping does not."""
    report = Reporter()
    a, b = parse_expr("a or b  and c", "x", report), parse_expr("a or\n (b and c)", "x", report)
    assert a == b and a.span != b.span and a.right.span != b.right.span
    assert parse_expr("(a or b) and c", "x", report) != a and not report.diagnostics


# --- meaning, fixed point, comments ------------------------------------------------------------


@pytest.mark.parametrize("sources,checks", CASES)
def test_formatting_keeps_meaning_comments_and_is_its_own_fixed_point(sources, checks):
    formatted = {name: format_source(text, name) for name, text in sources.items()}
    for name, text in sources.items():
        out = formatted[name]
        assert decls(out) == decls(text), name
        assert format_source(out, name) == out, name
        assert comments(out) == comments(text), name
    if checks:
        before, after = lang.check(sources, today=TODAY), lang.check(formatted, today=TODAY)
        assert plain(after) == plain(before)
        assert generated(after) == generated(before)


def test_the_comparison_catches_a_change_of_grouping():
    """The brackets of `(a or b) and c` dropped: same tokens but one pair, another tree; both
    the catalog and the generated code must differ."""
    sources = {p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.offer"))}
    shifted = dict(sources)
    shifted["30_web.offer"] = sources["30_web.offer"].replace(
        'eligible contact.age ?? 99 < 26 and "student" in contact.tags',
        'eligible (contact.age ?? 99 < 26 or contact.vip) and "student" in contact.tags')
    dropped = dict(shifted)
    dropped["30_web.offer"] = shifted["30_web.offer"].replace("(contact.age ?? 99 < 26 or contact.vip)",
                                                              "contact.age ?? 99 < 26 or contact.vip")
    assert shifted != sources and dropped != shifted
    a, b = lang.check(shifted, today=TODAY), lang.check(dropped, today=TODAY)
    assert plain(a) != plain(b) and generated(a) != generated(b)
    assert decls(shifted["30_web.offer"]) != decls(dropped["30_web.offer"])


def sprinkle(text: str, rnd: random.Random, p: float) -> str:
    """`text` with comments between its tokens: at the end of a line (`  # tN`) or on lines
    of their own (`# lN`), some after a blank line."""
    out, pos, n = [], 0, 0
    for t in _tokens(_concrete(text)[0])[0]:
        out.append(text[pos:t.end_pos])
        pos = t.end_pos
        r = rnd.random()
        if r < p:
            n += 1
            out.append(f"  # t{n}\n" if r < p / 2 else f"\n{chr(10) * (n % 3 == 0)}# l{n}\n")
    out.append(text[pos:])
    return "".join(out)


SPRINKLED = [c for c in CASES if c.id == "example" or c.id.startswith("fixtures/codegen")]


@pytest.mark.parametrize("sources,checks", SPRINKLED)
def test_comments_anywhere_stay_in_order_and_keep_the_tree(sources, checks):
    for name, text in sources.items():
        for seed, p in ((1, 0.2), (2, 1.0)):
            messy = sprinkle(text, random.Random(seed), p)
            out = format_source(messy, name)
            assert comments(out) == comments(messy) and len(comments(messy)) > 2
            assert decls(out) == decls(messy), (name, seed)
            assert format_source(out, name) == out, (name, seed)


def test_the_layout():
    """One layout whatever the spacing: 2-space blocks, one item per line, content fields one
    per line without commas, a long rule broken before its operators, brackets and literals
    as written, blank lines kept (one at most), comments where they were."""
    messy = ('# head\ntimezone   "Europe/Paris"\nschema contact{a:int b:set< string >  c:int in -5 to 5}\n'
             'let  x=1+2*( 3-1)   # trailing\nlet y = [1,2 ,3]\n\n\n\nlet z = x\n'
             'offer o{spaces web,mail\n\n\n  eligible contact.a>1 and( contact.c ?? 0 )<2 and '
             'has(contact.b) and contact.a != 1234567 and contact.a != 7654321 and not contact.a in [1, 2]\n'
             '  # before the content\n  content web{title "t {contact.a}",url "u"}  weight 1.50+7d 12h\n'
             '}\n# the end\n')
    assert format_source(messy) == (
        '# head\ntimezone "Europe/Paris"\n\nschema contact {\n  a: int\n  b: set<string>\n  c: int in -5 to 5\n}\n\n'
        'let x = 1 + 2 * (3 - 1)  # trailing\nlet y = [1, 2, 3]\n\nlet z = x\n\n'
        'offer o {\n  spaces web, mail\n\n  eligible contact.a > 1\n    and (contact.c ?? 0) < 2\n'
        '    and has(contact.b)\n    and contact.a != 1234567\n    and contact.a != 7654321\n'
        '    and not contact.a in [1, 2]\n  # before the content\n  content web {\n    title "t {contact.a}"\n'
        '    url "u"\n  }\n  weight 1.50 + 7d 12h\n}\n# the end\n')
    assert format_source("") == "" and format_source("# only\n\n") == "# only\n"
    assert format_source("let x = # t\n a\nlet y =\n# l\n b or\n# m\n c") == \
        "let x =  # t\n  a\nlet y =\n  # l\n  b\n    # m\n    or c\n"
    assert format_source("offer o {}") == "offer o {}\n"


def test_a_file_that_does_not_parse_raises_the_parser_diagnostics():
    with pytest.raises(lang.CatalogError) as e:
        format_source("offer o {\n  eligible a ==\n}\n", "rules.offer")
    assert e.value.errors and e.value.errors[0].span[:3] == ("rules.offer", 3, 1)
    assert e.value.render().startswith("rules.offer:3:1: error: ")


# --- random expressions -----------------------------------------------------------------------

GEN = Gen(propensity=True)


def grouping(text: str) -> list[tuple[int, int]]:
    """(open, close) offsets of the brackets that group (not a call's), outside strings."""
    pairs, stack, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            before = text[:i].rstrip()[-1:]
            stack.append((i, not (before.isalnum() or before == "_")))
        elif c == ")":
            start, groups = stack.pop()
            if groups:
                pairs.append((start, i))
        i += 1
    return pairs


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=GEN.expr("bool", 4), data=st.data())
def test_random_expressions_keep_their_tree(text, data):
    """A random expression, some of its brackets dropped (a new grouping, whatever it reads
    as) and comments put between its tokens, formatted and parsed again: the same tree."""
    pairs = grouping(text)
    drop = data.draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    cut = sorted(x for (a, b), d in zip(pairs, drop) if d for x in (a, b))
    for offset in reversed(cut):
        text = text[:offset] + " " + text[offset + 1:]
    source = f"let x = {text}\n"
    assume(parses(source))
    messy = sprinkle(source, random.Random(data.draw(st.integers(0, 2**16))), data.draw(st.sampled_from((0, 0.3))))
    out = format_source(messy)
    assert decls(out) == decls(messy)
    assert comments(out) == comments(messy)
    assert format_source(out) == out


# --- the command ------------------------------------------------------------------------------

MESSY = 'offer o {  spaces web eligible (contact.a or contact.b)and contact.c   # why\n}\n'
BROKEN = "offer o {\n  eligible contact.a ==\n}\n"


def offerd(*args, stdin: str | None = None, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "offerd.cli", *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "catalog"
    d.mkdir()
    (d / "messy.offer").write_text(MESSY)
    (d / "messy.offer").chmod(0o640)
    (d / "neat.offer").write_text(format_source(MESSY))
    (d / "zz_broken.offer").write_text(BROKEN)
    (d / "notes.txt").write_text("not a catalog file (left alone)")
    return d


def snapshot(d: pathlib.Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_check_lists_what_would_change_writes_nothing_and_fails(folder):
    before = snapshot(folder)
    r = offerd("fmt", "--check", folder)
    assert r.returncode == 1 and r.stdout == f"would reformat {folder / 'messy.offer'}\n", r
    assert snapshot(folder) == before
    assert "zz_broken.offer:3:1: error:" in r.stderr
    (folder / "zz_broken.offer").unlink()
    (folder / "messy.offer").write_text(format_source(MESSY))
    r = offerd("fmt", "--check", folder)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r


def test_diff_shows_the_change_and_writes_nothing(folder):
    before = snapshot(folder)
    r = offerd("fmt", "--diff", folder / "messy.offer", folder / "neat.offer")
    assert r.returncode == 0, r
    assert r.stdout.startswith(f"--- {folder / 'messy.offer'} (as written)\n+++ {folder / 'messy.offer'} (formatted)\n")
    assert "\n-offer o {  spaces web" in r.stdout and "\n+  eligible (contact.a or contact.b) and contact.c  # why\n" \
        in r.stdout and "neat.offer" not in r.stdout
    assert snapshot(folder) == before


def test_diff_of_a_file_without_a_final_newline_marks_it_and_lines_end_at_newlines_only(tmp_path, capsys):
    """As diff and git mark it: otherwise the last `-` line runs into the first `+` one and no
    tool can apply the diff."""
    path = tmp_path / "a.offer"
    path.write_text("let x=1\nlet y=2")
    assert main(["fmt", "--diff", str(path)]) == 0
    assert capsys.readouterr().out.split("\n")[2:] == [
        "@@ -1,2 +1,2 @@", "-let x=1", "-let y=2", "\\ No newline at end of file", "+let x = 1", "+let y = 2", ""]
    path.write_text('let x=1\flet y="\u2028"\n')  # lines end at \n only: a form feed is a space
    assert main(["fmt", "--diff", str(path)]) == 0
    assert capsys.readouterr().out.split("\n")[2:] == [
        "@@ -1 +1,2 @@", '-let x=1\flet y="\u2028"', "+let x = 1", '+let y = "\u2028"', ""]


def test_a_folder_is_rewritten_in_place_and_a_broken_file_is_left_with_its_diagnostics(folder, capsys):
    before = snapshot(folder)
    r = offerd("fmt", folder)
    assert r.returncode == 1 and r.stdout == f"reformatted {folder / 'messy.offer'}\n", r
    after = snapshot(folder)
    assert after["messy.offer"].decode() == format_source(MESSY)
    assert stat.S_IMODE((folder / "messy.offer").stat().st_mode) == 0o640
    assert {k: v for k, v in after.items() if k != "messy.offer"} == \
        {k: v for k, v in before.items() if k != "messy.offer"}  # no temporary file left either
    alone = folder.parent / "alone"
    alone.mkdir()
    (alone / "zz_broken.offer").write_text(BROKEN)
    assert main(["check", str(alone)]) == 1  # in this process: only its words are wanted
    shown = capsys.readouterr().err.replace("zz_broken.offer:", f"{folder / 'zz_broken.offer'}:")
    assert r.stderr == shown.removesuffix("1 error\n"), (r.stderr, shown)


def test_standard_input_to_standard_output():
    r = offerd("fmt", "-", stdin=MESSY)
    assert r.returncode == 0 and r.stdout == format_source(MESSY) and r.stderr == "", r
    r = offerd("fmt", "-", stdin=BROKEN)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith("<stdin>:3:1: error: "), r
    r = offerd("fmt", "--check", "-", stdin=MESSY)
    assert r.returncode == 1 and r.stdout == "would reformat <stdin>\n", r


def test_a_missing_path_is_one_line_and_exit_2(tmp_path, capsys):
    """Refusals, run in this process (tests/test_cli_errors.py runs them as a user does)."""
    for args, said in (([tmp_path / "nowhere.offer"], "no such file or folder"),
                       ([tmp_path], "no *.offer files"),
                       (["-", tmp_path], "cannot be given with other paths")):
        assert main(["fmt", *map(str, args)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("offerd: ") and said in err, err
