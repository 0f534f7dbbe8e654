"""The checker's diagnostics, exact text, from golden files."""
import datetime

from golden import cases, compare
import pytest

from offerd import lang

TODAY = datetime.date(2026, 11, 23)


def diagnostics_of(path):
    sources = {path.name: path.read_text()}
    try:
        catalog = lang.check(sources, today=TODAY)
    except lang.CatalogError as e:
        return e, [d.render(sources) for d in e.diagnostics]
    return None, [d.render(sources) for d in catalog.diagnostics]


@pytest.mark.parametrize("path", cases("errors"))
def test_error_fixture(path):
    error, rendered = diagnostics_of(path)
    assert error is not None, "this catalog must be rejected"
    assert error.errors, "rejected with at least one error"
    compare(path, ".expected", "\n\n".join(rendered) + "\n")


@pytest.mark.parametrize("path", cases("warnings"))
def test_warning_fixture(path):
    error, rendered = diagnostics_of(path)
    assert error is None, "warnings alone must not reject a catalog"
    assert rendered
    compare(path, ".expected", "\n\n".join(rendered) + "\n")


def test_every_error_is_reported_not_just_the_first():
    src = (
        "schema contact { age: int }\n"
        "space web { limit 1 }\n"
        "offer a { spaces web  eligible contact.agee > 1 }\n"
        "offer b { spaces webb }\n"
        "offer c { spaces web  weight contact.age + true }\n"
    )
    with pytest.raises(lang.CatalogError) as e:
        lang.check({"x.offer": src})
    lines = [d.span.line for d in e.value.errors]
    assert lines == [3, 4, 5]


def test_syntax_errors_in_several_files_are_all_reported():
    sources = {"a.offer": "offer a {", "b.offer": "let x = ", "c.offer": "space s { limit 1 }"}
    with pytest.raises(lang.CatalogError) as e:
        lang.check(sources)
    assert [d.span.file for d in e.value.errors] == ["a.offer", "b.offer"]


def test_error_format_is_file_line_col_source_caret_hint():
    src = "schema contact { age: int }\nlet x = contact.agee >= 18\n"
    with pytest.raises(lang.CatalogError) as e:
        lang.check({"rules.offer": src})
    assert e.value.errors[0].render({"rules.offer": src}) == (
        "rules.offer:2:9: error: unknown attribute contact.agee\n"
        "let x = contact.agee >= 18\n"
        "        ^~~~~~~~~~~~\n"
        "hint: did you mean contact.age?"
    )


def test_caret_keeps_tabs_so_it_lines_up():
    src = "schema contact { age: int }\n\tlet x = contact.agee\n"
    with pytest.raises(lang.CatalogError) as e:
        lang.check({"t.offer": src})
    source_line, caret = e.value.errors[0].render({"t.offer": src}).splitlines()[1:3]
    assert source_line.startswith("\t")
    assert caret == "\t        ^~~~~~~~~~~~"


def test_declaration_order_is_file_name_then_position():
    sources = {
        "b.offer": "offer b1 { spaces s }\noffer b2 { spaces s }\n",
        "a.offer": "space s { limit 1 }\noffer a1 { spaces s }\n",
    }
    catalog = lang.check(sources)
    assert [o.name for o in catalog.offers] == ["a1", "b1", "b2"]


def test_catalog_hash_changes_with_content_and_file_names():
    base = {"a.offer": "space s { limit 1 }\n"}
    h1 = lang.check(base).hash
    assert lang.check(dict(base)).hash == h1
    assert lang.check({"a.offer": "space s { limit 2 }\n"}).hash != h1
    assert lang.check({"b.offer": "space s { limit 1 }\n"}).hash != h1


def test_offer_limit_is_enforced(monkeypatch):
    from offerd.lang import checker

    monkeypatch.setattr(checker, "MAX_OFFERS", 3)
    src = "space s { limit 1 }\n" + "".join(f"offer o{i} {{ spaces s }}\n" for i in range(4))
    with pytest.raises(lang.CatalogError) as e:
        lang.check({"x.offer": src})
    assert "4 offers; the limit is 3" in str(e.value)


def test_file_size_limit_is_enforced(monkeypatch):
    from offerd.lang import parser

    monkeypatch.setattr(parser, "MAX_FILE_BYTES", 100)
    with pytest.raises(lang.CatalogError) as e:
        lang.check({"big.offer": "# " + "x" * 200 + "\n"})
    assert "the limit is 100 bytes" in str(e.value)


def test_read_dir_reports_invalid_utf8(tmp_path):
    (tmp_path / "a.offer").write_bytes(b"space s { limit 1 }\n# caf\xe9\n")
    with pytest.raises(lang.CatalogError) as e:
        lang.load(str(tmp_path))
    assert "a.offer:2:1: error: not valid UTF-8" in str(e.value)


def test_read_dir_without_offer_files(tmp_path):
    with pytest.raises(lang.CatalogError) as e:
        lang.load(str(tmp_path))
    assert "no *.offer files" in str(e.value)


def test_long_lines_are_cut_around_the_caret():
    src = "schema contact { age: int }\nlet x = \"" + "x" * 300 + "\" == contact.agee\n"
    with pytest.raises(lang.CatalogError) as e:
        lang.check({"t.offer": src})
    _, line, caret, _ = e.value.errors[0].render({"t.offer": src}).splitlines()
    assert len(line) <= 125 and line.startswith("…") and "contact.agee" in line
    assert line[caret.index("^"):].startswith("contact.agee")


COALESCE_SCHEMA = "schema contact { a: int  b: int }\n"


def coalesce_warnings(expr):
    catalog = lang.check({"c.offer": f"{COALESCE_SCHEMA}let x = {expr}\nlet y = x\nspace s {{ limit 1  eligible y }}\n"})
    return [d for d in catalog.diagnostics if "`??`" in d.message]


@pytest.mark.parametrize("expr,op,read,meant", [
    ("contact.a ?? 0 + contact.b ?? 0 >= 75000", "`+`", "contact.a ?? (0 + contact.b) ?? 0",
     "(contact.a ?? 0) + (contact.b ?? 0)"),
    ("contact.a + contact.b ?? 0 > 1", "`+`", "(contact.a + contact.b) ?? 0", "contact.a + (contact.b ?? 0)"),
    ("contact.a ?? 1 - 2 > 1", "`-`", "contact.a ?? (1 - 2)", "(contact.a ?? 1) - 2"),
    ("contact.a ?? 1 * 2 > 1", "`*`", "contact.a ?? (1 * 2)", "(contact.a ?? 1) * 2"),
    ("contact.a ?? 1 / 2 > 1", "`/`", "contact.a ?? (1 / 2)", "(contact.a ?? 1) / 2"),
    ("contact.a ?? 1 % 2 > 1", "`%`", "contact.a ?? (1 % 2)", "(contact.a ?? 1) % 2"),
    ("contact.a ?? 0 * 2 + 1 > 1", "`+`", "contact.a ?? (0 * 2 + 1)", "(contact.a ?? 0) * 2 + 1"),
    ("1 + (contact.a) ?? contact.b > 1", "`+`", "(1 + (contact.a)) ?? contact.b", "1 + ((contact.a) ?? contact.b)"),
])
def test_arithmetic_beside_coalesce_warns_showing_how_it_reads(expr, op, read, meant):
    (d,) = coalesce_warnings(expr)  # a warning: the catalog still loads
    assert d.severity == "warning"
    assert d.message == f"`??` binds looser than {op}, so this reads as `{read}`"
    assert d.hint == f"write `{meant}` to apply each `??` first, or the brackets shown above to keep this reading"
    assert (d.span.line, d.span.col) == (2, 9)


@pytest.mark.parametrize("expr", [
    "(contact.a ?? 0) + (contact.b ?? 0) >= 75000",
    "contact.a ?? (0 + contact.b) ?? 0 >= 75000",
    "(contact.a + contact.b) ?? 0 > 1",
    "contact.a ?? (1 * 2) > 1",
    "contact.a ?? contact.b ?? 0 > 1",
    "contact.a ?? 0 >= 18",
    "-contact.a ?? -1 > 0",
    "(contact.a ?? 1) * 2 + 1 > 0",
    "contact.a * 2 ?? 0 > 1",  # the other reading, `contact.a * (2 ?? 0)`, means nothing: 2 is never null
    "contact.a - 1 ?? contact.b - 1 ?? 0 > 1",
])
def test_brackets_or_no_arithmetic_mean_no_coalesce_warning(expr):
    assert coalesce_warnings(expr) == []


def test_one_coalesce_warning_per_chain():
    (d,) = coalesce_warnings("contact.a ?? 0 + contact.b ?? 0 + contact.a ?? 0 > 1")
    assert "contact.a ?? (0 + contact.b) ?? (0 + contact.a) ?? 0" in d.message
