"""Fuzzing ODL through parse → check → compile.

Three sources of input, each run through the whole pipeline (`fuzz_one`):

- derivations of the grammar itself (src/offerd/lang/grammar.lark, read with lark): whole
  catalogs, lone expressions placed in a small catalog, and token soup;
- mutations of valid catalogs (the bundled example, the conformance cases' catalogs):
  spans deleted, duplicated or swapped, keywords and punctuation inserted, names swapped
  for dunders, numbers made huge, control characters, unbalanced braces and quotes;
- a regression corpus, tests/fuzz_corpus/: every input that ever broke something, and the
  nastiest ones tried, each file's first line saying what it is.

The property: a catalog is refused with our CatalogError (every diagnostic with a file, a
line and a message), or it checks; whatever checks compiles (every space, every part), and
its compiled decisions and content agree with the reference interpreter. Never another
exception, never a hang: each input has a time budget.

OFFERD_FUZZ_SCALE=20 runs twenty times the examples, with a random seed (a soak); the
default run is derandomized, so CI sees the same inputs every time.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import pathlib
import re
import signal
import time
from collections import Counter
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark

from offerd import lang
from offerd.compiler import Moment, SpaceCache, compile_space
from offerd.compiler.runtime import text as render_text
from offerd.examples import CATALOG as EXAMPLE_DIR
from offerd.lang import CatalogError
from offerd.lang.diagnostics import Reporter
from offerd.lang.functions import CALLABLE
from offerd.lang.parser import parse

import reference  # tests/reference.py
import strategies as props  # value strategies, histories and comparisons

SCALE = int(os.environ.get("OFFERD_FUZZ_SCALE", "1"))
BUDGET = 2.0  # seconds per input, for parse + check + compile + a few decisions
TODAY = datetime.date(2026, 6, 1)  # the checker's "no longer valid" warning only
HERE = pathlib.Path(__file__).parent
CORPUS = HERE / "fuzz_corpus"


def fuzz_settings(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=SCALE == 1,
                    database=None, report_multiple_bugs=False, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# --- the pipeline under a time budget -----------------------------------------------------------


class Hang(BaseException):  # not an Exception: no `except Exception` in the code under test eats it
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    fired = []

    def on_alarm(signum, frame):
        fired.append(True)
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if fired:  # raised where Python ignores exceptions (a GC callback, a __del__): still over budget
        raise Hang(f"over {seconds} s")


def assert_clean_refusal(e: CatalogError, sources: dict[str, str]) -> None:
    """A refusal a rule author can act on: errors, each pointing into a file, with words."""
    assert e.errors, "CatalogError without an error"
    for d in e.diagnostics:
        assert d.severity in ("error", "warning"), d
        assert isinstance(d.message, str) and d.message.strip(), d
        assert d.span.file in sources, f"diagnostic points at unknown file {d.span.file!r}: {d}"
        lines = sources[d.span.file].count("\n") + 1
        assert 1 <= d.span.line <= lines, f"line {d.span.line} outside 1..{lines}: {d}"
        assert d.span.col >= 1, d
    assert isinstance(e.render(), str) and str(e)


class Result:
    def __init__(self, stage: str, catalog=None, spaces=None):
        self.stage = stage  # "syntax" (refused by the parser), "checker" (refused later), "compiled"
        self.catalog, self.spaces = catalog, spaces or {}


def fuzz_one(sources: dict[str, str]) -> Result:
    """Parse, check, and compile every part of every space, within BUDGET seconds. An input
    over budget runs once more: a hang is slow twice; a stall of the machine (seen once in
    10,000 inputs, not reproducible) is not."""
    try:
        return _fuzz_one(sources)
    except AssertionError as e:
        if not str(e).startswith("hang:"):
            raise
        STALLS.append(e)
        return _fuzz_one(sources)


STALLS: list = []


def _fuzz_one(sources: dict[str, str]) -> Result:
    try:
        with time_limit(BUDGET):
            report = Reporter()
            for name in sorted(sources):
                parse(sources[name], name, report)
            parsed = not report.has_errors
            try:
                catalog = lang.check(sources, today=TODAY)
            except CatalogError as e:
                assert_clean_refusal(e, sources)
                return Result("checker" if parsed else "syntax")
            # whatever checks must compile: the fast path, explain, top and content
            spaces = {}
            for name in catalog.spaces:
                compiled = compile_space(catalog, name, SpaceCache())
                for part in ("explain", "render") + (("top",) if compiled.ranks_by_bound else ()):
                    compiled.source_of(part)
                spaces[name] = compiled
            return Result("compiled", catalog, spaces)
    except Hang as e:
        raise AssertionError(f"hang: {e}") from None


# --- compiled decisions against the reference -----------------------------------------------------


def environments(catalog):
    """Contacts, contexts, decision times and histories fitting `catalog`'s schemas and offers."""
    offers = tuple(o.name for o in catalog.offers) or ("nothing",)
    chains = {o.name: o.chain for o in catalog.offers} or {"nothing": ()}
    spaces = tuple(catalog.spaces) or ("nowhere",)

    @st.composite
    def env(draw):
        when = draw(st.datetimes(datetime.datetime(2026, 1, 1), datetime.datetime(2027, 1, 1),
                                 timezones=st.just(datetime.timezone.utc)))
        moment = Moment.at(when, catalog.timezone)
        return (draw(props.attributes(catalog.contact, "contact")),
                draw(props.attributes(catalog.context, "context")),
                moment, draw(props.histories(moment, offers=offers, chains=chains, spaces=spaces)))

    return env()


def reference_render(catalog, template, contact, context, moment, history, space) -> str:
    """docs/language.md: `{expr}` rendered as text, null as the empty string."""
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(render_text(reference.evaluate(part, contact, context, moment, history,
                                                      catalog.lets, space)))
    return "".join(out)


def assert_agrees(result: Result, envs, source_text: str) -> int:
    """Every space's evaluate, explain and content against the reference; returns the
    number of decisions compared."""
    catalog, compared = result.catalog, 0
    for space, compiled in result.spaces.items():
        offers = catalog.offers_in(space)
        assert [o.name for o in compiled.offers] == [o.name for o in offers]
        for contact, context, moment, history in envs:
            where = props.describe(f"space: {space}", contact, context, moment, history) + "\n" + source_text
            with time_limit(BUDGET):
                expected = [reference.explain_offer(catalog, space, o, contact, context, moment, history)
                            for o in offers]
                outcomes = props.run(compiled.explain, "explain", where, contact, context, moment, history)
                fast = props.run(compiled.evaluate, "evaluate", where, contact, context, moment, history)
                rendered = {}
                for pos, offer in enumerate(offers):
                    rendered[offer.name] = props.run(compiled.render, "render", where, pos, contact, context,
                                                     moment, history)
                if compiled.fallback is not None:
                    rendered[compiled.fallback.name] = props.run(compiled.render_fallback, "render", where,
                                                                 contact, context, moment, history)
            for offer, outcome, (verdict, detail) in zip(offers, outcomes, expected):
                if verdict == "eligible":
                    assert outcome.eligible and props.same(outcome.weight, detail), (
                        f"{offer.name}: explain {outcome}, reference weight {detail!r}" + where)
                else:
                    assert not outcome.eligible and outcome.rule == detail, (
                        f"{offer.name}: explain {outcome.rule or 'eligible'}, reference {detail}" + where)
            want = [(pos, w) for pos, (verdict, w) in enumerate(expected) if verdict == "eligible"]
            assert [p for p, _ in fast] == [p for p, _ in want], f"evaluate {fast}, reference {want}" + where
            assert all(props.same(a, b) for (_, a), (_, b) in zip(fast, want)), f"evaluate {fast}, {want}" + where
            for name, fields in rendered.items():
                offer = catalog.offers_by_name[name]
                expected_fields = {f: reference_render(catalog, t, contact, context, moment, history, space)
                                   for f, t in offer.content.get(space, ())}
                assert fields == expected_fields, f"content of {name}: {fields}, reference {expected_fields}" + where
            compared += 1
    return compared


def run_and_compare(sources: dict[str, str], data) -> Result:
    result = fuzz_one(sources)
    if result.stage == "compiled":
        envs = data.draw(st.lists(environments(result.catalog), min_size=1, max_size=3), label="environments")
        assert_agrees(result, envs, "\n".join(f"=== {k}\n{v}" for k, v in sorted(sources.items())))
    return result


# --- 1. derivations of the grammar ----------------------------------------------------------------

GRAMMAR = Lark(resources.files("offerd.lang").joinpath("grammar.lark").read_text(), parser="lalr",
               start=["start", "expr"], maybe_placeholders=True)
RULES: dict[str, list[tuple[tuple[str, bool], ...]]] = {}
for _rule in GRAMMAR.rules:
    RULES.setdefault(_rule.origin.name, []).append(tuple((s.name, s.is_term) for s in _rule.expansion))
TERMINALS = {t.name: t.pattern for t in GRAMMAR.terminals}
IGNORED = set(GRAMMAR.ignore_tokens)


def _heights() -> dict[str, int]:
    """The least derivation height of each nonterminal: what a derivation picks once its
    depth or token budget is spent, so it always ends."""
    height: dict[str, int] = {}
    changed = True
    while changed:
        changed = False
        for name, expansions in RULES.items():
            for exp in expansions:
                if all(term or sym in height for sym, term in exp):
                    h = 1 + max([height[sym] for sym, term in exp if not term], default=0)
                    if h < height.get(name, 1 << 30):
                        height[name], changed = h, True
    return height


HEIGHT = _heights()


def _expansion_height(exp) -> int:
    return 1 + max([HEIGHT[sym] for sym, term in exp if not term], default=0)


KEYWORDS = sorted(p.value for p in TERMINALS.values() if p.type == "str" and re.fullmatch(r"[a-z]+", p.value))
PUNCTUATION = sorted(p.value for p in TERMINALS.values() if p.type == "str" and not re.fullmatch(r"[a-z]+", p.value))
DUNDERS = ["__class__", "__globals__", "__builtins__", "__import__", "__subclasses__", "__mro__",
           "__init__", "_rt_len", "_c", "_x", "_h", "_el", "_k0", "_p0", "gi_frame", "f_globals"]
# names a catalog is likely to declare or use, so some derivations get through the checker
NAMES = ["contact", "context", "a", "b", "s", "web", "mail", "o", "p", "loyalty", "string", "int",
         "float", "bool", "date", "set", "list", "inbound", "outbound", "now", "today", "propensity",
         "title", *CALLABLE]  # CALLABLE: every function, history's included
EXPR_NAMES = ["contact", "context", "a", "b", "f", "s", "t", "d", "v", "page", "adult", "o", "p",
              "now", "today", "propensity", "x", *CALLABLE]

# terminal texts beyond the regexps: edge values of each literal
SPECIAL = {
    "INT": ["0", "1", "18", "9223372036854775807", "9223372036854775808", "9" * 30, "007", "9" * 5000],
    "FLOAT": ["0.0", "1.5", "0.1", "1" * 39 + ".0", "9" * 400 + ".9", "00.00"],
    "DATE": ["2026-11-01", "2026-02-29", "2024-02-29", "0000-01-01", "9999-12-31", "2026-13-40"],
    "DURATION": ["1d", "0d", "30d", "12h", "0s", "36500d", "36501d", "99999999999999999999d", "9" * 5000 + "d"],
    "STRING": ['""', '"x"', '"Europe/Paris"', '"UTC"', '"{contact.a}"', '"{"', '"}"', '"{{x}}"',
               '"\\q"', '"{1 +}"', '"{contact.s ?? \\"z\\"}"', '"{{"', '"{}"', '"\\\\"', '"{0.__class__}"',
               '"{' + "(" * 60 + "1" + ")" * 60 + '}"'],
}


def _regex(pattern: str) -> str:
    return re.sub(r"\(\?![^)]*\)", "", pattern)  # lookaheads: the separator decides those


@st.composite
def derivation(draw, start: str, names, odd: bool, max_tokens: int = 160, max_depth: int = 80):
    """Terminal names and texts of a random derivation of `start`, bounded: past the token
    budget or the depth, only the shortest alternatives are taken. `odd`: literals and
    names include edge values and anything their regexps match."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, int]] = [(start, 0)]
    while stack:
        sym, depth = stack.pop()
        if sym in TERMINALS:
            out.append((sym, draw(terminal_text(sym, names, odd))))
            continue
        options = RULES[sym]
        if len(out) >= max_tokens or depth >= max_depth:
            least = min(map(_expansion_height, options))
            options = [o for o in options if _expansion_height(o) == least]
        exp = draw(st.sampled_from(options))
        stack.extend((s, depth + 1) for s, _ in reversed(exp))
    return out


# terminal texts a rule author would write: most literals are these, so one odd literal
# does not sink every long input in a value error
PLAIN = {
    "INT": st.integers(0, 1000).map(str),
    "FLOAT": st.decimals(0, 1000, places=2).map(str),
    "DATE": st.dates(datetime.date(2025, 1, 1), datetime.date(2027, 12, 31)).map(str),
    "DURATION": st.builds(lambda k, unit: f"{k}{unit}", st.integers(1, 400), st.sampled_from("dhms")),
    "STRING": st.text(st.sampled_from('ab {}"\\é#\t'), max_size=8).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
}


def terminal_text(name: str, names, odd: bool):
    pattern = TERMINALS[name]
    if pattern.type == "str":
        return st.just(pattern.value)
    regex = st.from_regex(_regex(pattern.value), fullmatch=True)
    if name == "NAME":
        return st.one_of(names, names, st.sampled_from(KEYWORDS + DUNDERS), regex) if odd else names
    if name in PLAIN:
        plain = PLAIN[name]
        return st.one_of(plain, plain, st.sampled_from(SPECIAL[name]), regex) if odd else plain
    return regex


# between tokens: mostly a space; sometimes a newline, a comment, or (odd inputs) nothing: tokens glue
SEPARATORS = [" "] * 8 + ["\n", "\t", "  ", "\r\n", " # note\n", "\n\n", "\x0c"]
separators = st.sampled_from(SEPARATORS)
odd_separators = st.sampled_from(SEPARATORS + ["", ""])
comments = st.from_regex(TERMINALS["COMMENT"].value, fullmatch=True).map(lambda c: c + "\n")


@st.composite
def joined(draw, tokens, odd: bool, allow_comments=True):
    out = []
    between = odd_separators if odd else separators
    if not allow_comments:  # inside a template string: no newlines, no comments
        between = between.map(lambda s: " " if "#" in s or "\n" in s or "\r" in s else s)
    for _, text in tokens:
        out.append(text)
        sep = draw(between)
        if allow_comments and draw(st.integers(0, 40)) == 0:
            sep = " " + draw(comments)
        out.append(sep)
    return "".join(out)


HARNESS = """schema contact { a: int  b: int  f: float  s: string  t: set<string>  d: date  v: bool }
schema context { page: string }
let adult = contact.a >= 18
space web { limit 2  fallback o }
offer o { spaces web }
"""


def template_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@st.composite
def grammar_inputs(draw):
    """(how, {file: text}): a derivation of a whole catalog, an expression placed in a small
    catalog (as a rule, weight, let or content), or a soup of random terminals."""
    how = draw(st.sampled_from(["catalog", "catalog", "expression", "expression", "soup"]))
    odd = draw(st.integers(0, 2)) == 0
    if how == "catalog":
        tokens = draw(derivation("start", st.sampled_from(NAMES), odd))
        return how, {"f.offer": draw(joined(tokens, odd))}
    if how == "soup":
        kinds = sorted(set(TERMINALS) - IGNORED)
        tokens = [(k, draw(terminal_text(k, st.sampled_from(NAMES), True)))
                  for k in draw(st.lists(st.sampled_from(kinds), max_size=60))]
        return how, {"f.offer": draw(joined(tokens, True))}
    tokens = draw(derivation("expr", st.sampled_from(EXPR_NAMES), odd, max_tokens=24))
    where = draw(st.sampled_from(["eligible", "weight", "let", "content"]))
    if where == "content":
        expr = draw(joined(tokens, odd, allow_comments=False))
        body = f'offer p {{ spaces web  content web {{ title "x {{{template_escape(expr)}}} y" }} }}'
    else:
        expr = draw(joined(tokens, odd))
        if where == "let":
            body = f"let z = {expr}\noffer p {{ spaces web  weight if adult then 1 else 0  eligible z == z }}"
        else:
            body = f"offer p {{ spaces web  {where} {expr}\n}}"
    return how, {"f.offer": HARNESS + body}


def test_grammar_derivations_are_refused_cleanly_or_compile_and_agree():
    stats: Counter = Counter()

    @fuzz_settings(500)
    @given(case=grammar_inputs(), data=st.data())
    def run(case, data):
        how, sources = case
        stats[how, run_and_compare(sources, data).stage] += 1

    run()
    total = sum(stats.values())
    by_stage = Counter()
    for (_, stage), k in stats.items():
        by_stage[stage] += k
    print(f"\ngrammar derivations: {total} inputs; {dict(sorted(stats.items()))}; stalls retried: {len(STALLS)}")
    # a fuzzer whose every input dies in the lexer tests nothing behind it
    assert by_stage["checker"] + by_stage["compiled"] >= total // 4, by_stage
    assert by_stage["compiled"] >= total // 20, by_stage
    assert by_stage["syntax"] >= total // 10, by_stage


# --- 2. mutations of valid catalogs ---------------------------------------------------------------


def split_case(text: str) -> dict[str, str]:
    """The catalog files of a conformance case (tests/conformance/README.md)."""
    files, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^=== (file (\S+)|steps)\s*$", line)
        if m:
            current = m.group(2)
            if current is not None:
                files[current] = ""
        elif current is not None:
            files[current] += line + "\n"
    return files


def seed_catalogs() -> dict[str, dict[str, str]]:
    seeds = {"example": lang.read_dir(EXAMPLE_DIR)}
    for path in sorted((HERE / "conformance").glob("*.case")):
        seeds[path.stem] = split_case(path.read_text(encoding="utf-8"))
    return seeds


SEEDS = seed_catalogs()
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\d+(?:\.\d+)?[a-z]?|[A-Za-z_][A-Za-z0-9_]*|\?\?|[=!<>]=|\s+|.', re.S)
IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")
NUMBER = re.compile(r"\d")
HUGE_NUMBERS = ["9223372036854775807", "9223372036854775808", "99999999999999999999999", "-1", "0",
                "-9223372036854775807", "1.5", "0.0", "1" * 39 + ".5", "1" * 41 + ".0", "9" * 400 + ".9",
                "2026-02-30", "0d", "36501d", "1e308", "0x10", "1_000", "9" * 5000, "9" * 5000 + "d",
                "٣", "1.٥", "٢٠٢٦-٠١-٠١"]
ODD_CHARACTERS = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\udfff", "\U0001f600",
                  "\u0130", "\uff3f\uff3f", "\r", "\\", "\t", "é"]
INSERTS = KEYWORDS + PUNCTUATION + ["==", "!=", "<=", "??", "+", "*", "/", "%", "=", '"', "{", "}", "(", ")",
                                   "[", "]", "{{", "}}", "#", "'", "&&", "!", "\\", "not in", "if", "in web:"]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


@st.composite
def mutate(draw, text: str, names: list[str]) -> str:
    """One random mutation of a file's text."""
    tokens = TOKEN.findall(text)
    n = len(tokens)
    i = draw(st.integers(0, max(n - 1, 0)))
    j = draw(st.integers(i, min(n, i + 12)))
    op = draw(st.sampled_from([
        "delete", "duplicate", "swap", "delete_line", "duplicate_line", "swap_lines", "insert",
        "rename", "dunder", "number", "truncate", "character", "long_name", "nest", "unbalanced", "lets"]))
    if op == "delete":
        return "".join(tokens[:i] + tokens[j:])
    if op == "duplicate":
        return "".join(tokens[:j] + tokens[i:j] + tokens[j:])
    if op == "swap" and n:
        k = draw(st.integers(0, max(n - 1, 0)))
        tokens[i], tokens[k] = tokens[k], tokens[i]
        return "".join(tokens)
    if op in ("delete_line", "duplicate_line", "swap_lines"):
        lines = _lines(text) or [""]
        a, b = (draw(st.integers(0, len(lines) - 1)) for _ in range(2))
        if op == "delete_line":
            del lines[a]
        elif op == "duplicate_line":
            lines.insert(b, lines[a])
        else:
            lines[a], lines[b] = lines[b], lines[a]
        return "".join(lines)
    if op == "insert":
        word = draw(st.sampled_from(INSERTS))
        return "".join(tokens[:i] + [" ", word, " "] + tokens[i:])
    idents = [k for k, t in enumerate(tokens) if IDENT.match(t)]
    numbers = [k for k, t in enumerate(tokens) if NUMBER.match(t)]
    if op in ("rename", "dunder", "long_name") and idents:
        k = draw(st.sampled_from(idents))
        tokens[k] = (draw(st.sampled_from(names)) if op == "rename" else
                     draw(st.sampled_from(DUNDERS)) if op == "dunder" else
                     draw(st.sampled_from(["a" * 10_000, "x_" * 3000, "_" * 500])))
        return "".join(tokens)
    if op == "number" and numbers:
        tokens[draw(st.sampled_from(numbers))] = draw(st.sampled_from(HUGE_NUMBERS))
        return "".join(tokens)
    if op == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if op == "nest" and n:
        k, depth = draw(st.integers(0, n - 1)), draw(st.sampled_from([10, 47, 49, 100, 3000]))
        opener = draw(st.sampled_from(["(", "[", "not ", "- ", "if true then "]))
        closer = {"(": ")", "[": "]"}.get(opener, "")
        tail = "" if opener != "if true then " else " else 0"
        tokens[k] = opener * depth + tokens[k] + (closer + tail) * depth
        return "".join(tokens)
    if op == "lets":  # a chain of lets, each using the next or the previous one, maybe in a cycle
        k, shape = draw(st.sampled_from([3, 50, 400, 1000])), draw(st.sampled_from(["next", "previous", "cycle", "twice"]))
        if shape == "previous":
            lets = ["let zl0 = 1"] + [f"let zl{i} = zl{i - 1} + 1" for i in range(1, k)]
        elif shape == "twice":
            lets = ["let zl0 = 1"] + [f"let zl{i} = zl{i - 1} + zl{i - 1}" for i in range(1, k)]
        else:
            lets = [f"let zl{i} = zl{i + 1} + 1" for i in range(k - 1)] + [f"let zl{k - 1} = {'zl0' if shape == 'cycle' else '1'}"]
        return text + "\n" + "\n".join(lets) + "\n"
    if op == "unbalanced":
        return "".join(tokens[:i] + [draw(st.sampled_from(['"', "{", "}", "(", ")", "[", "]", '"{', "\\"]))] + tokens[i:])
    # "character", and the fallbacks of the ops above that found nothing to change
    position = draw(st.integers(0, len(text)))
    return text[:position] + draw(st.sampled_from(ODD_CHARACTERS)) + text[position:]


@st.composite
def mutated_catalogs(draw):
    seed = draw(st.sampled_from(sorted(SEEDS)))
    sources = dict(SEEDS[seed])
    names = sorted({t for text in sources.values() for t in TOKEN.findall(text) if IDENT.match(t)})
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4]))):
        file = draw(st.sampled_from(sorted(sources)))
        if draw(st.integers(0, 30)) == 0:  # a file twice, under another name: duplicate declarations
            sources["zz_" + file] = sources[file]
            continue
        sources[file] = draw(mutate(sources[file], names))
    return seed, sources


def test_mutated_catalogs_are_refused_cleanly_or_compile_and_agree():
    stats: Counter = Counter()

    @fuzz_settings(500)
    @given(case=mutated_catalogs(), data=st.data())
    def run(case, data):
        _, sources = case
        stats[run_and_compare(sources, data).stage] += 1

    run()
    print(f"\nmutated catalogs: {sum(stats.values())} inputs; {dict(stats)}; stalls retried: {len(STALLS)}")
    # the mutations must reach every stage: some break the syntax, some the rules, some neither
    total = sum(stats.values())
    assert min(stats["syntax"], stats["checker"], stats["compiled"]) >= total // 20, stats


def test_the_seed_catalogs_compile_and_agree():
    """The mutations start from catalogs that compile: else they test only refusals."""
    for name, sources in SEEDS.items():
        result = fuzz_one(sources)
        assert result.stage == "compiled", name
        assert result.spaces, name


# --- 3. the regression corpus ---------------------------------------------------------------------


def corpus_cases():
    paths = sorted(p for p in CORPUS.iterdir() if p.suffix == ".offer" or p.is_dir())
    assert paths, "the fuzz corpus is empty"
    return [pytest.param(p, id=p.stem) for p in paths]


def read_case(path: pathlib.Path) -> dict[str, str]:
    """A case's files as text; bytes that are not UTF-8 become lone surrogates, which the
    parser must refuse or carry like any other character."""
    files = sorted(path.glob("*.offer")) if path.is_dir() else [path]
    return {p.name: p.read_bytes().decode("utf-8", "surrogateescape") for p in files}


EXPECT = re.compile(rb"# (refused|compiles|either): \S")


@pytest.mark.parametrize("path", corpus_cases())
def test_corpus_case_is_refused_cleanly_or_compiles(path, tmp_path):
    """Each case's first line is `# refused: ...`, `# compiles: ...` or `# either: ...`,
    then what the input broke or tries."""
    files = sorted(path.glob("*.offer")) if path.is_dir() else [path]
    expect = EXPECT.match(files[0].read_bytes())
    assert expect, f"{path.name}: the first line must say what to expect and what the input broke"
    sources = read_case(path)
    result = fuzz_one(sources)
    if expect.group(1) != b"either":
        assert (result.stage == "compiled") == (expect.group(1) == b"compiles"), result.stage
    # the reference evaluates every let from scratch (exponential in a chain of lets using
    # lets twice), so it only checks the cases with a few
    if result.stage == "compiled" and len(result.catalog.lets) <= 20:
        moment = Moment.at(datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.timezone.utc), result.catalog.timezone)
        for contact in ({}, {k: v for k, v in {"a": 5, "s": "x"}.items() if k in result.catalog.contact}):
            assert_agrees(result, [(contact, {}, moment, props.SeenHistory([], None))], path.name)
    # the same bytes as files on disk, through the loader (which refuses what is not UTF-8)
    folder = tmp_path / "catalog"
    folder.mkdir()
    for p in files:
        (folder / p.name).write_bytes(p.read_bytes())
    try:
        with time_limit(BUDGET):
            lang.load(str(folder), today=TODAY)
    except CatalogError as e:
        assert e.errors and all(d.message.strip() and d.span.line >= 1 for d in e.diagnostics), e.diagnostics
    except Hang as e:
        raise AssertionError(f"hang: {e}") from None


def test_the_time_budget_stops_a_hang():
    started = time.monotonic()
    with pytest.raises(Hang):
        with time_limit(0.2):
            while True:
                pass
    assert time.monotonic() - started < 5
