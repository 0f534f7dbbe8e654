"""`offerd lsp` as an editor meets it: a real server process over stdio, driven with LSP
JSON-RPC messages by the small client in lsp_client.py, on a copy of the example catalog."""
from __future__ import annotations

import datetime
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from offerd import lang
from offerd.authoring.lsp.folder import Folder
from offerd.authoring.lsp.incremental import parse_file
from offerd.lang.diagnostics import Reporter
from offerd.lang.parser import parse
from lsp_client import Client, uri

EXAMPLE = pathlib.Path(__file__).parent.parent / "src" / "offerd" / "examples" / "catalog"


class Session:
    """One server for the module, on one catalog folder; tests edit through it in order and
    put every file back as it was (`restore`)."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.client = Client()
        self.init = self.client.initialize(folder)
        self.versions: dict[str, int] = {}
        self.texts = {p.name: p.read_text() for p in folder.glob("*.offer")}
        self.current = dict(self.texts)

    def doc(self, name: str) -> str:
        if name not in self.versions:
            self.versions[name] = 1
            self.client.open(self.folder / name)
            self.client.wait_diagnostics(uri(self.folder / name), 1)
        return uri(self.folder / name)

    def edit(self, name: str, text: str) -> list[dict]:
        """Change an open file; the diagnostics published for the new version."""
        doc = self.doc(name)
        self.versions[name] += 1
        self.current[name] = text
        self.client.replace(doc, self.versions[name], text)
        return self.client.wait_diagnostics(doc, self.versions[name])

    def restore(self) -> None:
        for name, text in self.texts.items():
            if self.current[name] != text:
                self.edit(name, text)

    def at(self, name: str, needle: str, offset: int = 0, nth: int = 0) -> dict:
        """textDocument + position of `needle` (its nth occurrence) in a file's current text,
        `offset` characters in, in UTF-16 units."""
        text = self.current[name]
        i = -1
        for _ in range(nth + 1):
            i = text.index(needle, i + 1)
        line = text.count("\n", 0, i)
        before = text[text.rfind("\n", 0, i) + 1: i + offset]
        return {"textDocument": {"uri": self.doc(name)},
                "position": {"line": line, "character": len(before.encode("utf-16-le")) // 2}}

    def diagnostics(self, name: str) -> list[dict]:
        return self.client.diagnostics[uri(self.folder / name)]["diagnostics"]


@pytest.fixture(scope="module")
def s(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lsp") / "catalog"
    shutil.copytree(EXAMPLE, folder)
    session = Session(folder)
    yield session
    assert session.client.stop() == 0, session.client.proc.stderr.read().decode()


@pytest.fixture
def clean(s):
    yield s
    s.restore()


def expected(s: Session, name: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """What `offerd check` says about a file of the current texts: (message with hint, 0-based range)."""
    try:
        found = lang.check(dict(s.current)).diagnostics
    except lang.CatalogError as e:
        found = e.diagnostics
    return [(d.message + (f"\nhint: {d.hint}" if d.hint else ""),
             (d.span.line - 1, d.span.col - 1, d.span.end_line - 1, d.span.end_col - 1))
            for d in found if d.span.file == name]


def shown(diagnostics: list[dict]) -> list[tuple[str, tuple[int, int, int, int]]]:
    return [(d["message"], (d["range"]["start"]["line"], d["range"]["start"]["character"],
                            d["range"]["end"]["line"], d["range"]["end"]["character"])) for d in diagnostics]


def test_initialize_announces_the_features_and_opening_a_file_checks_its_whole_folder(s):
    caps = s.init["capabilities"]
    for feature in ("hoverProvider", "definitionProvider", "referencesProvider", "completionProvider",
                    "documentSymbolProvider"):
        assert caps.get(feature), feature
    s.doc("20_loyalty.offer")
    # every file of the folder gets its (empty) diagnostics, not only the open one
    for name in s.texts:
        assert s.client.wait_diagnostics(uri(s.folder / name)) == [], name


def test_an_error_typed_in_a_file_is_shown_as_offerd_check_shows_it_and_the_fix_clears_it(clean):
    s = clean
    text = s.texts["20_loyalty.offer"].replace('contact.country in ["FR"', 'contact.countyr in ["FR"')
    got = s.edit("20_loyalty.offer", text)
    want = expected(s, "20_loyalty.offer")
    assert shown(got) == want and len(want) == 1
    message, (line, col, _, end) = want[0]
    assert message == "unknown attribute contact.countyr\nhint: did you mean contact.country?"
    assert text.split("\n")[line][col:end] == "contact.countyr"
    assert got[0]["severity"] == 1 and got[0]["source"] == "offerd"
    assert s.edit("20_loyalty.offer", s.texts["20_loyalty.offer"]) == []


def test_an_error_caused_in_another_file_is_published_for_that_file(clean):
    s = clean
    s.doc("20_loyalty.offer")
    schema = s.texts["00_schema.offer"].replace("let adult = contact.age >= 18\n", "")
    assert s.edit("00_schema.offer", schema) == []  # the let's removal is fine where it was
    loyalty = uri(s.folder / "20_loyalty.offer")
    got = s.client.diagnostics[loyalty]["diagnostics"]
    assert shown(got) == expected(s, "20_loyalty.offer")
    assert [d["message"].split("\n")[0] for d in got] == ["unknown name adult"] * 2
    assert got[0]["range"]["start"] == s.at("20_loyalty.offer", "adult")["position"]
    # navigation still works while the catalog does not check
    found = s.client.request("textDocument/definition", s.at("20_loyalty.offer", "card_offers", nth=1))
    assert found[0]["range"]["start"] == s.at("20_loyalty.offer", "card_offers")["position"]
    s.edit("00_schema.offer", s.texts["00_schema.offer"])
    assert s.diagnostics("20_loyalty.offer") == [] and s.diagnostics("00_schema.offer") == []


def test_a_warning_has_warning_severity_and_columns_count_utf16_units(clean):
    s = clean
    text = s.texts["30_web.offer"].replace('title "Students save 15%"', 'title "🎓 Étudiants {contact.nmae}"')
    got = s.edit("30_web.offer", text)
    assert [m for m, _ in shown(got)] == [m for m, _ in expected(s, "30_web.offer")] and len(got) == 1
    line = text.split("\n")[got[0]["range"]["start"]["line"]]
    i = line.index("contact.nmae")
    assert got[0]["range"]["start"]["character"] == len(line[:i].encode("utf-16-le")) // 2 == i + 1
    assert got[0]["range"]["end"]["character"] - got[0]["range"]["start"]["character"] == len("contact.nmae")
    s.edit("30_web.offer", s.texts["30_web.offer"])
    text = s.texts["00_schema.offer"] + "let unused = 1\n"
    got = s.edit("00_schema.offer", text)
    assert [(d["message"], d["severity"]) for d in got] == [("let unused is never used", 2)]


def test_an_edit_below_a_line_separator_or_form_feed_lands_where_the_editor_made_it(clean):
    """LSP lines end at \\n, \\r\\n or \\r alone: a U+2028, a form feed or a U+0085 in a comment ends
    none, so an incremental edit's line numbers are the editor's (the server's copy of the text
    was cut there too, and took the edit lines away from where it was made)."""
    s = clean
    name = "30_web.offer"
    text = "# a\u2028b \x0c c \x85 d\n" + s.texts[name]
    s.edit(name, text)
    where = s.at(name, "weight 30")["position"]
    s.versions[name] += 1
    s.current[name] = text.replace("weight 30", "weight contact.nope", 1)
    s.client.notify("textDocument/didChange", {
        "textDocument": {"uri": s.doc(name), "version": s.versions[name]},
        "contentChanges": [{"range": {"start": where, "end": {**where, "character": where["character"] + 9}},
                            "text": "weight contact.nope"}]})
    got = s.client.wait_diagnostics(s.doc(name), s.versions[name])
    assert shown(got) == expected(s, name) and "unknown attribute contact.nope" in got[0]["message"]


def test_below_a_carriage_return_alone_positions_are_the_editors_lines(clean):
    """A \\r alone (in a comment) ends an LSP line but not an ODL one: below it, diagnostics,
    hover and formatting's whole-file edit count the editor's lines (the edit ended a line early,
    leaving the file's last line after the formatted text)."""
    s, name = clean, "30_web.offer"
    text = "# a\rb\n" + s.texts[name].replace("weight 30", "weight contact.nope", 1)
    got = s.edit(name, text)
    below = [(m, (a + 1, b, c + 1, d)) for m, (a, b, c, d) in expected(s, name)]  # every one is below
    assert shown(got) == below and "unknown attribute contact.nope" in got[0]["message"]
    where = s.at(name, "contact.birthday", offset=9)
    where["position"]["line"] += 1
    hover = s.client.request("textDocument/hover", where)
    assert "contact.birthday: date" in hover["contents"]["value"]
    assert hover["range"]["start"] == {**where["position"], "character": where["position"]["character"] - 1}  # birthday
    messy = text.replace("weight contact.nope", "weight   30") + "# the end\rlast"
    s.edit(name, messy)
    edits = s.client.request("textDocument/formatting", {"textDocument": {"uri": s.doc(name)},
                                                         "options": {"tabSize": 2, "insertSpaces": True}})
    assert edits[0]["range"]["end"] == {"line": messy.count("\n") + 2, "character": len("last")}


def test_a_syntax_error_keeps_the_files_last_index_for_navigation(clean):
    s = clean
    text = s.texts["20_loyalty.offer"].replace("  weight 10 + contact.cart_total / 100\n", "  weight 10 +\n")
    got = s.edit("20_loyalty.offer", text)
    assert got and shown(got) == expected(s, "20_loyalty.offer")
    found = s.client.request("textDocument/definition", s.at("20_loyalty.offer", "card_offers", nth=1))
    assert found[0]["uri"].endswith("20_loyalty.offer") and \
        found[0]["range"]["start"] == s.at("20_loyalty.offer", "card_offers")["position"]


def test_rapid_changes_end_in_the_newest_texts_diagnostics_never_older_ones_after(clean):
    s = clean
    doc, name = s.doc("30_web.offer"), "30_web.offer"
    start, changes = len(s.client.log), []
    for k in range(30):  # in one write: the server coalesces what waits while it checks
        s.versions[name] += 1
        typo = "contact.cart_totl" if k % 2 == 0 else "contact.cart_tota"
        s.current[name] = s.texts[name].replace("contact.cart_total", typo, 1)
        changes.append(s.client.replace(doc, s.versions[name], s.current[name], send=False))
    s.client.send(*changes)
    got = s.client.wait_diagnostics(doc, s.versions[name])
    assert shown(got) == expected(s, name) and "contact.cart_tota\n" in got[0]["message"] + "\n"
    versions = [p["version"] for _, p in s.client.log[start:] if p["uri"] == doc]
    assert versions == sorted(versions) and versions[-1] == s.versions[name]


def test_closing_an_edited_file_goes_back_to_the_file_on_disk(clean):
    s = clean
    name = "10_spaces.offer"
    assert s.edit(name, s.texts[name].replace("limit 3", "limit 0"))[0]["message"] == \
        "a space's limit must be at least 1"
    s.client.notify("textDocument/didClose", {"textDocument": {"uri": s.doc(name)}})
    s.client.pump(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                  and m["params"]["uri"] == s.doc(name) and m["params"]["diagnostics"] == [])
    del s.versions[name]
    s.current[name] = s.texts[name]


def test_a_file_written_on_disk_is_checked_once_the_client_says_so_and_cleared_once_removed(clean):
    s = clean
    s.doc("20_loyalty.offer")  # the folder is open
    path = s.folder / "40_new.offer"
    text = "offer newcomer {\n  spaces newsletter\n  weight contact.agee\n}\n"
    path.write_text(text)
    try:
        s.client.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": uri(path), "type": 1}]})
        got = s.client.wait_diagnostics(uri(path))
    finally:
        path.unlink()
    assert [d["message"].split("\n")[0] for d in got] == ["unknown attribute contact.agee"]
    assert got[0]["range"] == {"start": {"line": 2, "character": 9}, "end": {"line": 2, "character": 21}}
    s.client.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": uri(path), "type": 3}]})
    s.client.pump(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                  and m["params"]["uri"] == uri(path) and m["params"]["diagnostics"] == [])


def test_hover_shows_types_definitions_and_summaries(s):
    hover = lambda *a, **k: s.client.request("textDocument/hover", s.at(*a, **k))["contents"]["value"]  # noqa: E731
    assert "let adult = contact.age >= 18" in hover("20_loyalty.offer", "adult", 1) and \
        "type: bool" in hover("20_loyalty.offer", "adult", 1)
    assert 'contact.segment: string in ["basic", "silver", "gold", "platinum"]' in hover(
        "20_loyalty.offer", "contact.segment", 9)
    assert "contact.satisfaction: int in 1 to 5" in hover("20_loyalty.offer", "contact.satisfaction", 9)
    offer = hover("10_spaces.offer", "fallback welcome", 10)
    assert "offer welcome" in offer and "spaces web_home" in offer and "weight 0" in offer
    space = hover("20_loyalty.offer", "web_home", 2)
    assert "space web_home" in space and "limit 3" in space and "gold_upgrade" in space
    assert "category loyalty.upsell" in hover("20_loyalty.offer", "category loyalty.upsell", 18)
    assert hover("20_loyalty.offer", "hour(now)", 1) == "```odl\nhour(t)\n```\n\ntakes a time (now)"


def test_definition_of_lets_categories_fields_offers_and_spaces(s):
    def target(*a, **k):
        found = s.client.request("textDocument/definition", s.at(*a, **k))
        assert len(found) == 1, found
        return pathlib.Path(found[0]["uri"][len("file://"):]).name, found[0]["range"]["start"]["line"], \
            found[0]["range"]["start"]["character"]

    def where(name, needle, offset):
        p = s.at(name, needle, offset)["position"]
        return name, p["line"], p["character"]

    assert target("20_loyalty.offer", "adult", 1) == where("00_schema.offer", "let adult", 4)
    assert target("20_loyalty.offer", "category loyalty.upsell", 18, nth=1) == \
        where("20_loyalty.offer", "category loyalty.upsell {", 9)
    assert target("20_loyalty.offer", "category loyalty.upsell", 10, nth=1) == \
        where("20_loyalty.offer", "category loyalty {", 9)  # the parent
    assert target("20_loyalty.offer", "contact.cart_total", 10) == where("00_schema.offer", "cart_total:", 0)
    assert target("10_spaces.offer", "fallback welcome", 10) == where("30_web.offer", "offer welcome", 6)
    assert target("30_web.offer", "proposed(free_shipping", 10) == where("30_web.offer", "offer free_shipping", 6)
    assert target("20_loyalty.offer", "spaces web_home", 8) == where("10_spaces.offer", "space web_home", 6)


def test_references_of_a_space_span_the_folder(s):
    found = s.client.request("textDocument/references", {**s.at("10_spaces.offer", "web_home", 1),
                                                         "context": {"includeDeclaration": True}})
    files = sorted({pathlib.Path(f["uri"]).name for f in found})
    assert files == ["10_spaces.offer", "20_loyalty.offer", "30_web.offer"]
    count = sum(t.count("web_home") for t in s.texts.values())
    assert len(found) == count
    without = s.client.request("textDocument/references", {**s.at("10_spaces.offer", "web_home", 1),
                                                           "context": {"includeDeclaration": False}})
    assert len(without) == count - 1


COMPLETION_KEYWORD = 14  # LSP's CompletionItemKind.Keyword


def test_completion_offers_schema_fields_and_names_where_they_go(clean):
    s = clean
    text = s.texts["30_web.offer"] + "offer draft {\n  spaces \n  eligible contact.\n  weight \n}\n"
    s.edit("30_web.offer", text)
    lines = text.split("\n")

    def labels(line_no: int) -> dict:
        position = {"line": line_no, "character": len(lines[line_no])}
        items = s.client.request("textDocument/completion", {"textDocument": {"uri": s.doc("30_web.offer")},
                                                             "position": position})["items"]
        return {i["label"]: i for i in items}

    fields = labels(len(lines) - 4)
    assert {"age", "segment", "cart_total", "id"} <= set(fields) and "page" not in fields
    assert fields["tags"]["detail"] == "set<string>"
    assert set(labels(len(lines) - 5)) == {"web_home", "callcenter_next", "newsletter", "sms"}
    words = labels(len(lines) - 3)  # after `weight `: keywords (the grammar's), functions, roots, lets
    grammar = (pathlib.Path(__file__).parent.parent / "src/offerd/lang/grammar.lark").read_text()
    quoted = set(re.findall(r'"([a-z]+)"', re.sub(r"//[^\n]*", "", grammar)))  # its comments aside
    assert {w for w, i in words.items() if i["kind"] == COMPLETION_KEYWORD} == quoted - {"contact"}
    assert words["round"]["detail"] == "round(x, n): takes a number and an int (decimals)"
    assert words["contact"]["kind"] != COMPLETION_KEYWORD and words["adult"]["detail"].startswith("let, 00_schema")


def test_document_symbols_list_declarations_with_their_clauses(s):
    found = s.client.request("textDocument/documentSymbol", {"textDocument": {"uri": s.doc("20_loyalty.offer")}})
    assert [x["name"] for x in found] == ["loyalty", "loyalty.upsell", "card_offers", "gold_upgrade",
                                          "gold_upgrade_sms", "platinum_concierge"]
    gold = found[3]
    text = s.texts["20_loyalty.offer"]
    block = text[text.index("offer gold_upgrade {"):text.index("\n}\n", text.index("offer gold_upgrade {")) + 2]
    start = s.at("20_loyalty.offer", "offer gold_upgrade {")["position"]
    assert gold["range"]["start"] == start and gold["range"]["end"] == {"line": start["line"] + block.count("\n"),
                                                                        "character": 1}
    assert gold["selectionRange"]["start"] == {"line": start["line"], "character": 6}
    clauses = [line for line in block.split("\n")[1:-1] if line.startswith("  ") and not line.startswith("   ")
               and not line.strip().startswith(("#", "}"))]
    assert gold["children"][0]["name"] == "category loyalty.upsell" and len(gold["children"]) == len(clauses) == 16


def test_end_of_input_ends_the_server():
    client = Client()
    client.proc.stdin.close()
    assert client.proc.wait(30) == 0


def test_without_pygls_the_command_says_what_to_install(tmp_path):
    (tmp_path / "pygls").mkdir()
    (tmp_path / "pygls" / "__init__.py").write_text("raise ImportError('no pygls here')\n")
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
                        "from offerd.cli import main; sys.exit(main(['lsp']))"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stderr.strip().endswith("pip install 'offerd[lsp]'") and \
        len(r.stderr.strip().split("\n")) == 1, r.stderr


# --- in process: the server's incremental check says what `offerd check` says ----------------

ROOT = pathlib.Path(__file__).parent
TODAY = datetime.date(2027, 1, 15)


def checked(sources: dict[str, str] | None, folder: pathlib.Path | None = None) -> list:
    """`offerd check`'s diagnostics, of these sources or of the folder's files."""
    try:
        return list(lang.check(sources if folder is None else lang.read_dir(str(folder)), TODAY).diagnostics)
    except lang.CatalogError as e:
        return e.diagnostics


def folder_says(folder: Folder, sources: dict[str, str]) -> list:
    return [d for found in folder.check(sources, TODAY).diagnostics.values() for d in found]


CASES = sorted([*ROOT.glob("fixtures/*/*.offer"), *ROOT.glob("fuzz_corpus/*/"),  # a folder: a catalog
                *(p for p in ROOT.glob("fuzz_corpus/*.offer") if p.stat().st_size < 12_000)])  # the big ones: slow


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_fixture_gets_the_diagnostics_of_offerd_check(path, tmp_path):
    """Every fixture and fuzz case as a folder on disk (some are not UTF-8), checked by the
    server's folder and by `offerd check`."""
    if path.is_dir():
        tmp_path = tmp_path / "catalog"
        shutil.copytree(path, tmp_path)
    else:
        shutil.copy(path, tmp_path)
    assert sorted(map(repr, folder_says(Folder(str(tmp_path)), {}))) == sorted(map(repr, checked(None, tmp_path)))


def test_edits_in_a_row_reuse_parses_and_offers_and_still_match_offerd_check(tmp_path):
    """One folder checked after each edit (its caches warm), against a fresh `lang.check`:
    edits inside an offer, lines added above others, a let removed and renamed, an offer
    renamed, a syntax error and its fix, a warning."""
    sources = {p.name: p.read_text() for p in EXAMPLE.glob("*.offer")}
    folder = Folder(str(tmp_path))
    assert folder_says(folder, sources) == checked(sources) == []
    steps = [
        ("20_loyalty.offer", "weight 10 + contact.cart_total / 100", "weight 10 + contact.cart_totl / 100"),
        ("20_loyalty.offer", "weight 10 + contact.cart_totl / 100", "weight 10 + contact.cart_total / 100"),
        ("20_loyalty.offer", "category loyalty {", "\n\n# moved down\ncategory loyalty {"),
        ("00_schema.offer", "let adult = contact.age >= 18", "let grown = contact.age >= 18"),
        ("20_loyalty.offer", "eligible adult and contact.country", "eligible grown and contact.country"),
        ("30_web.offer", "offer welcome {", "offer welcome2 {"),
        ("30_web.offer", "offer welcome2 {", "offer welcome {"),
        ("30_web.offer", "weight 30\n", "weight 30 +\n"),
        ("30_web.offer", "weight 30 +\n", "weight 30\n"),
        ("00_schema.offer", "let grown", "let unused = 1\nlet grown"),
        ("10_spaces.offer", "  limit 3\n", "  limit 3\n  fields title, url, image?, badge\n"),
    ]
    for name, old, new in steps:
        assert old in sources[name], old
        sources = {**sources, name: sources[name].replace(old, new, 1)}
        assert folder_says(folder, sources) == checked(sources), (old, new)
    assert folder.result.diagnostics["00_schema.offer"][0].message == "let unused is never used"


def test_editing_a_category_group_or_space_rule_replays_every_offer_and_still_matches_offerd_check(tmp_path):
    """Offers read categories and groups by name and spaces by name and fields: a keystroke in
    a category's cap or rule, a group's cap or a space's limit checks no offer again (lines
    kept: an offer whose lines move is parsed again), one in a space's fields or a category's
    name checks them all, and each says what `offerd check` says."""
    sources = {p.name: p.read_text() for p in EXAMPLE.glob("*.offer")}
    folder = Folder(str(tmp_path))
    folder_says(folder, sources)
    offers = sum(text.count("\noffer ") + text.startswith("offer ") for text in sources.values())
    steps = [
        ("20_loyalty.offer", "cap 2 per contact per 7d", "cap 27 per contact per 7d", offers),
        ("20_loyalty.offer", '["gold", "platinum"]', '["gold", "platinm"]', offers),  # an error in a category
        ("20_loyalty.offer", "cap 1 per decision", "cap 2 per decision", offers),
        ("10_spaces.offer", "limit 3", "limit 4", offers),
        ("10_spaces.offer", "fields title, url, image?", "fields title, url", 0),
        ("20_loyalty.offer", "category loyalty.upsell {", "category loyalty.upsel {", 0),
    ]
    for name, old, new, replayed in steps:
        assert old in sources[name], old
        sources = {**sources, name: sources[name].replace(old, new, 1)}
        assert folder_says(folder, sources) == checked(sources), (old, new)
        assert folder.reused == replayed, (old, new, folder.reused)


def test_a_files_declarations_shared_out_to_its_chunks_are_those_each_chunk_parses_to():
    for path in [*EXAMPLE.glob("*.offer"), *ROOT.glob("fixtures/codegen/*.offer")]:
        text = path.read_text()
        module, found, kept = parse_file(text, path.name, {})
        assert found == [] and len(kept) > 2, path
        for (before, chunk), (decls, _) in kept.items():
            alone = parse("\n" * before + chunk, path.name, Reporter()).decls
            assert [(type(d), d.span) for d in decls] == [(type(d), d.span) for d in alone], (path, before)
        assert sum(len(d) for d, _ in kept.values()) == len(module.decls)


def test_a_keyword_starting_a_line_inside_a_declaration_is_not_taken_for_a_chunk_of_its_own(tmp_path):
    """`offer` ending a line and `group` (the offer's name) starting the next: one declaration
    over two chunks. The first line edited into a declaration of its own leaves `group {` without
    a name, a syntax error, as `offerd check` says (the second chunk's shared-out offer was kept)."""
    space = "space s {\n  limit 1\n}\n"
    folder = Folder(str(tmp_path))
    for first in ("offer\n", "let a = 1\n", "offer\n"):
        sources = {"a.offer": space + first + "group {\n  spaces s\n}\n"}
        assert folder_says(folder, sources) == checked(sources), first
    assert checked({"a.offer": space + "let a = 1\ngroup {\n}\n"})[0].message == "unexpected '{'; expected a name"


def test_a_file_that_cannot_be_read_is_reported_as_offerd_check_reports_it(tmp_path):
    """A *.offer link to nothing: `offerd check` cannot read it, and neither can the server,
    which says so (it left the file out and checked the rest)."""
    for p in EXAMPLE.glob("*.offer"):
        shutil.copy(p, tmp_path)
    (tmp_path / "40_gone.offer").symlink_to(tmp_path / "nowhere.offer")
    said = folder_says(Folder(str(tmp_path)), {})
    assert said == checked(None, tmp_path) and "cannot read" in said[0].message


def test_formatting_is_offerd_fmts_layout_as_one_edit_and_none_for_a_file_that_does_not_parse(clean):
    from offerd.authoring.fmt import format_source

    s, name = clean, "10_spaces.offer"
    messy = s.texts[name].replace("  limit 3\n", "limit    3\n") + "# 🎁 the end"  # no newline at the end
    s.edit(name, messy)
    ask = {"textDocument": {"uri": s.doc(name)}, "options": {"tabSize": 2, "insertSpaces": True}}
    edits = s.client.request("textDocument/formatting", ask)
    last = messy.split("\n")[-1]
    assert edits == [{"range": {"start": {"line": 0, "character": 0},
                                "end": {"line": messy.count("\n"), "character": len(last) + 1}},  # 🎁: 2 units
                      "newText": format_source(messy, name)}]
    assert "\n  limit 3\n" in edits[0]["newText"] and edits[0]["newText"] != messy
    s.edit(name, edits[0]["newText"])
    assert s.client.request("textDocument/formatting", ask) == []  # formatted already
    s.edit(name, messy.replace("limit    3", "limit"))
    before = len(s.client.other)
    assert s.client.request("textDocument/formatting", ask) is None
    said = [m["params"] for m in s.client.other[before:] if m.get("method") == "window/showMessage"]
    assert len(said) == 1 and said[0]["message"].startswith(f"offerd: {name} is not formatted: it does not parse (")
    gone = {"textDocument": {"uri": uri(s.folder / "99_not_there.offer")}, "options": ask["options"]}
    assert s.client.request("textDocument/formatting", gone) is None  # not open, not on disk: no edit, no error
