"""The editor grammar (editors/vscode/syntaxes/odl.tmLanguage.json), tokenized as VS Code does it
(vscode-textmate and Oniguruma under node, in one process for every file), held to the language:
every keyword of grammar.lark, every function, the tokens of the lark lexer in every catalog that
parses, and the tricky spots (a # in a string, templates, dates against ints, keywords as names)."""
from __future__ import annotations

import bisect
import functools
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lark import Lark

from offerd.lang.diagnostics import Reporter
from offerd.lang.expressions import CONSTANTS
from offerd.lang.functions import FUNCTIONS, HISTORY_FUNCTIONS
from offerd.lang.parser import parse

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = EXTENSION / "syntaxes" / "odl.tmLanguage.json"
TOKENIZE = EXTENSION / "test" / "tokenize.js"
LARK = ROOT / "src" / "offerd" / "lang" / "grammar.lark"
CORPUS = sorted([*(ROOT / "src" / "offerd" / "examples" / "catalog").glob("*.offer"),
                 *(ROOT / "tests" / "fixtures").rglob("*.offer"), *(ROOT / "tests" / "fuzz_corpus").rglob("*.offer")])

KEYWORD_SCOPES = ("keyword.", "storage.type.", "constant.language.")
WORD = re.compile(r"[a-z_]+")

# Small sources with something to check, tokenized in the same node run as the corpus.
SNIPPETS = {
    "comment": 'offer a { }  # a comment, "quoted" {braces}\n',
    "hash_in_string": 'timezone "Europe/#Paris"\n'
                      'offer a { content web { url "https://example.com/#top" } }\n',
    "template": 'offer a {\n  content web { subject "Hi {contact.first_name ?? \\"there\\"}, {{literal}} #1" }\n}\n',
    "plain_braces": 'let a = "{contact.age}"\n',
    "numbers": "offer a {\n  valid 2026-11-01 to 2027-12-24T06:00\n  weight 10 + 0.5 * days_since(contact.birthday)\n"
               "  cap 3 per contact per 7d\n  suppress 1h 30m after rejected\n}\nlet bad = 1h30m\n",
    "keyword_names": "schema contact {\n  total: int\n  limit: set<string>\n}\n"
                     "let a = contact.total > 1 and contact.if == 2 and context.offer\n",
    "declarations": "offer gold {\n  category loyalty.upsell\n}\noffer limit { }\nschema contact { }\n"
                    "space web { }\ngroup cards { }\ncategory loyalty.upsell { }\nlet adult = true\n",
    # clause keywords as attribute and let names: `content:` and `content and` open no content block
    "keyword_fields": "schema contact {\n  content: string\n  spaces: int\n  fields: int\n  weight: int\n}\n"
                      "space web { limit 1 }\nlet content = true\n"
                      "offer a {\n  spaces web\n  eligible content and contact.spaces > 1 and content and\n    true\n"
                      "  weight contact.weight\n"
                      "  content web { title \"t\" }\n}\n",
}


def keywords() -> list[str]:
    """The words grammar.lark quotes: the language's keywords."""
    text = "\n".join(line.split("//")[0] for line in LARK.read_text().splitlines())
    return sorted({s for s in re.findall(r'"((?:[^"\\]|\\.)*)"', text) if WORD.fullmatch(s)})


def keyword_snippets() -> dict[str, str]:
    """Each keyword alone on a line; each function called; each constant."""
    out = {f"kw:{k}": f"{k}\n" for k in keywords()}
    out.update({f"fn:{f}": f"let x = {f}(1)\n" for f in (*FUNCTIONS, *HISTORY_FUNCTIONS)})
    out.update({f"const:{c}": f"let x = {c}\n" for c in CONSTANTS})
    return out


@functools.cache
def parses(text: str) -> bool:
    report = Reporter()
    parse(text, "f.offer", report)
    return not report.diagnostics


@pytest.fixture(scope="module")
def tokens() -> dict[str, list[list[tuple[int, str, list[str]]]]]:
    """name → lines → (column, text, scopes), columns 0-based in code points."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the editor grammar is tokenized by vscode-textmate under node")
    if not (ROOT / "node_modules" / "vscode-textmate").is_dir():
        pytest.fail("vscode-textmate is missing: run `npm install` in the repository root (make test does)")
    sources = {str(p.relative_to(ROOT)): p.read_bytes().decode("utf-8", "replace") for p in CORPUS}
    sources.update(SNIPPETS)
    sources.update(keyword_snippets())
    run = subprocess.run([node, str(TOKENIZE), "--stdin"], input=json.dumps(sources), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = {}
    for name, lines in json.loads(run.stdout).items():
        out[name] = []
        for toks in lines:
            col, row = 0, []
            for t in toks:
                row.append((col, t["text"], t["scopes"]))
                col += len(t["text"])
            out[name].append(row)
    return out


def token(tokens, name: str, line: int, text: str) -> list[str]:
    """The scopes of the first token reading `text` on a 1-based line of a source."""
    found = [s for _, t, s in tokens[name][line - 1] if t == text]
    assert found, f"{name}:{line}: no token {text!r} in {[t for _, t, _ in tokens[name][line - 1]]}"
    return found[0]


def has(scopes: list[str], prefix: str | tuple[str, ...]) -> bool:
    return any(s.startswith(prefix) for s in scopes)


def test_every_line_tokenizes(tokens):
    """The tokens of each line are the line; nothing is invalid in a file that parses."""
    assert len(CORPUS) > 70
    parsing = 0
    for path in CORPUS:
        name = str(path.relative_to(ROOT))
        text = path.read_bytes().decode("utf-8", "replace")
        lines = text.split("\n")
        assert ["".join(t for _, t, _ in row) for row in tokens[name]] == lines, name
        if not parses(text):
            continue
        parsing += 1
        for i, row in enumerate(tokens[name], 1):
            bad = [(t, s[-1]) for _, t, s in row if has(s, "invalid")]
            assert not bad, f"{name}:{i}: {bad}"
    assert parsing > 40  # most of the corpus parses: the check above is not vacuous


def test_grammar_keywords_are_keywords(tokens):
    """Every word grammar.lark quotes is highlighted as a keyword: a new keyword fails here."""
    words = keywords()
    assert {"offer", "cap", "calendar", "if", "true"} <= set(words)
    for word in words:
        row = tokens[f"kw:{word}"][0]
        assert [t for _, t, _ in row] == [word]
        assert has(row[0][2], KEYWORD_SCOPES), f"keyword {word!r} is scoped {row[0][2]}"


def test_functions_and_constants(tokens):
    for f in (*FUNCTIONS, *HISTORY_FUNCTIONS):
        assert has(token(tokens, f"fn:{f}", 1, f), "support.function."), f
    for c in CONSTANTS:
        assert has(token(tokens, f"const:{c}", 1, c), "variable.language."), c


_SEEN: list = []


def _seen(tok):
    _SEEN.append(tok)
    return tok


_TERMINALS = {t.name: t.pattern for t in Lark(LARK.read_text(), parser="lalr").terminals}
_LARK = Lark(LARK.read_text(), parser="lalr", lexer_callbacks={n: _seen for n in _TERMINALS})


def lark_tokens(text: str) -> list:
    """The tokens lark's contextual lexer gives while parsing, comments included."""
    _SEEN.clear()
    _LARK.parse(text)
    return list(_SEEN)


_NUMBERS = {"DATE": "constant.numeric.date.", "DATETIME": "constant.numeric.datetime.",
            "DURATION": "constant.numeric.duration.", "INT": "constant.numeric.integer.",
            "FLOAT": "constant.numeric.float."}


def test_scopes_follow_the_language_lexer(tokens):
    """In every catalog that parses, each token of lark's lexer has the scope of its kind: a
    comment, a string, a date, a duration, an int; a keyword; a name (never a keyword)."""
    checked = 0
    sources = [(str(p.relative_to(ROOT)), p.read_bytes().decode("utf-8", "replace")) for p in CORPUS]
    for name, text in sources + list(SNIPPETS.items()):
        if not parses(text):
            continue
        for tok in lark_tokens(text):
            if tok.type == "WS":
                continue
            row = tokens[name][tok.line - 1]
            start, end = tok.column - 1, tok.column - 1 + len(tok.value)
            first = bisect.bisect_right(row, start, key=lambda r: r[0]) - 1
            covering = list(itertools.takewhile(lambda r: r[0] < end, itertools.islice(row, first, None)))
            where = f"{name}:{tok.line}:{tok.column} {tok.type} {tok.value[:40]!r}"
            pattern = _TERMINALS[tok.type]
            if tok.type == "COMMENT":
                assert all(has(s, "comment.line.number-sign.") for _, _, s in covering), where
            elif tok.type == "STRING":
                assert all(has(s, "string.quoted.double.") for _, _, s in covering), where
                assert not any(has(s, "comment.") for _, _, s in covering), where
            elif tok.type in _NUMBERS:
                assert [(t, has(s, _NUMBERS[tok.type])) for _, t, s in covering] == [(tok.value, True)], where
            elif tok.type == "NAME":
                assert not any(has(s, KEYWORD_SCOPES) for _, _, s in covering), where
            elif pattern.type == "str" and WORD.fullmatch(pattern.value):
                assert [(t, has(s, KEYWORD_SCOPES)) for _, t, s in covering] == [(tok.value, True)], where
            else:  # operators and punctuation
                assert all(has(s, ("keyword.operator.", "punctuation.")) for _, _, s in covering), where
            checked += 1
    assert checked > 5000


def test_comments_and_strings(tokens):
    assert has(token(tokens, "comment", 1, "#"), "comment.line.number-sign.")
    assert has(token(tokens, "comment", 1, ' a comment, "quoted" {braces}'), "comment.line.number-sign.")
    assert not has(token(tokens, "comment", 1, "offer"), "comment.")
    for line, text in ((1, "Europe/#Paris"), (2, "https://example.com/#top")):
        scopes = token(tokens, "hash_in_string", line, text)
        assert has(scopes, "string.quoted.double.") and not has(scopes, "comment."), scopes
    # braces in a string outside content are text, not a template
    assert token(tokens, "plain_braces", 1, "{contact.age}")[-1] == "string.quoted.double.odl"


def test_template_interpolation(tokens):
    scopes = token(tokens, "template", 2, "contact")
    assert has(scopes, "meta.interpolation.") and scopes[-1] == "variable.language.contact.odl", scopes
    assert token(tokens, "template", 2, "first_name")[-1] == "variable.other.property.odl"
    assert token(tokens, "template", 2, "??")[-1] == "keyword.operator.coalescing.odl"
    quote = token(tokens, "template", 2, '\\"')
    assert has(quote, "meta.interpolation.") and quote[-1] == "punctuation.definition.string.begin.odl"
    there = token(tokens, "template", 2, "there")
    assert has(there, "meta.interpolation.") and there[-1] == "string.quoted.double.odl"
    assert token(tokens, "template", 2, "}")[-1] == "punctuation.section.interpolation.end.odl"
    # {{ is a literal brace; text after the expression is the string again, # included
    brace = token(tokens, "template", 2, "{{")
    assert brace[-1] == "constant.character.escape.brace.odl" and not has(brace, "meta.interpolation.")
    assert token(tokens, "template", 2, "literal")[-1] == "string.quoted.double.template.odl"
    assert token(tokens, "template", 2, " #1")[-1] == "string.quoted.double.template.odl"
    assert token(tokens, "template", 2, "subject")[-1] == "variable.other.field.odl"
    assert token(tokens, "template", 3, "}")[-1] == "punctuation.section.block.end.odl"


def test_numbers(tokens):
    assert token(tokens, "numbers", 2, "2026-11-01")[-1] == "constant.numeric.date.odl"
    assert token(tokens, "numbers", 2, "2027-12-24T06:00")[-1] == "constant.numeric.datetime.odl"
    assert token(tokens, "numbers", 3, "10")[-1] == "constant.numeric.integer.odl"
    assert token(tokens, "numbers", 3, "0.5")[-1] == "constant.numeric.float.odl"
    assert token(tokens, "numbers", 4, "3")[-1] == "constant.numeric.integer.odl"
    assert token(tokens, "numbers", 4, "7d")[-1] == "constant.numeric.duration.odl"
    assert token(tokens, "numbers", 5, "1h")[-1] == "constant.numeric.duration.odl"
    assert token(tokens, "numbers", 5, "30m")[-1] == "constant.numeric.duration.odl"
    assert token(tokens, "numbers", 5, "rejected")[-1] == "constant.other.status.odl"
    # units glued together are no duration (the parser refuses 1h30m too)
    assert token(tokens, "numbers", 7, "1h30m")[-1] == "invalid.illegal.number.odl"


def test_keywords_as_names(tokens):
    assert token(tokens, "keyword_names", 2, "total")[-1] == "variable.other.field.odl"
    assert token(tokens, "keyword_names", 3, "limit")[-1] == "variable.other.field.odl"
    assert token(tokens, "keyword_names", 3, "set")[-1] == "support.type.odl"
    assert token(tokens, "keyword_names", 3, "string")[-1] == "support.type.odl"
    for word in ("total", "if", "offer"):
        assert token(tokens, "keyword_names", 5, word)[-1] == "variable.other.property.odl", word
    assert token(tokens, "keyword_names", 5, "and")[-1] == "keyword.operator.logical.odl"


def test_declared_names(tokens):
    assert token(tokens, "declarations", 1, "offer")[-1] == "storage.type.offer.odl"
    assert token(tokens, "declarations", 1, "gold")[-1] == "entity.name.type.offer.odl"
    # in an offer, `category` names the offer's category: a keyword and a reference
    assert token(tokens, "declarations", 2, "category")[-1] == "keyword.other.category.odl"
    assert token(tokens, "declarations", 2, "upsell")[-1] == "variable.other.category.odl"
    assert token(tokens, "declarations", 4, "limit")[-1] == "entity.name.type.offer.odl"
    assert token(tokens, "declarations", 5, "contact")[-1] == "entity.name.type.schema.odl"
    assert token(tokens, "declarations", 6, "web")[-1] == "entity.name.type.space.odl"
    assert token(tokens, "declarations", 7, "cards")[-1] == "entity.name.type.group.odl"
    assert token(tokens, "declarations", 8, "category")[-1] == "storage.type.category.odl"
    assert token(tokens, "declarations", 8, "loyalty")[-1] == "entity.name.type.category.odl"
    assert token(tokens, "declarations", 8, "upsell")[-1] == "entity.name.type.category.odl"
    assert token(tokens, "declarations", 9, "adult")[-1] == "entity.name.variable.let.odl"


def test_extension_manifest():
    """package.json contributes the language, the grammar and the settings the client reads."""
    manifest = json.loads((EXTENSION / "package.json").read_text())
    grammar = json.loads(GRAMMAR.read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "odl" and language["extensions"] == [".offer"]
    config = json.loads((EXTENSION / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    (contributed,) = manifest["contributes"]["grammars"]
    assert contributed["scopeName"] == grammar["scopeName"] == "source.odl"
    assert (EXTENSION / contributed["path"]).resolve() == GRAMMAR
    assert (EXTENSION / manifest["main"]).is_file()
    settings = manifest["contributes"]["configuration"]["properties"]
    assert settings["offerd.path"]["default"] == "offerd" and settings["offerd.args"]["default"] == []
    source = (EXTENSION / manifest["main"]).read_text()
    assert all(f"'{key.split('.', 1)[1]}'" in source for key in ("offerd.path", "offerd.args"))
