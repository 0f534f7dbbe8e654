"""Syntax errors as a rule author meets them (lang/hints.py): each names the mistake where it
was made and says how to fix it."""
import pytest

from offerd.domain import DURATION_UNITS
from offerd.lang.diagnostics import Reporter
from offerd.lang.parser import parse


def error_of(src: str):
    report = Reporter()
    parse(src, "s.offer", report)
    errors = [d for d in report.diagnostics if d.severity == "error"]
    assert len(errors) == 1, [d.render({"s.offer": src}) for d in report.diagnostics]
    return errors[0]


def underlined(src: str, d) -> str:
    """The text the caret underlines."""
    return src.splitlines()[d.span.line - 1][d.span.col - 1 : d.span.end_col - 1]


# --- misspelled keywords


@pytest.mark.parametrize("src,typo,keyword", [
    ("offer o {\n  eligable contact.age > 18\n}", "eligable", "eligible"),
    ("offer o { spaces web  wieght 10 }", "wieght", "weight"),
    ("offer o { eligible true\n  wieght 10 }", "wieght", "weight"),
    ("offer o { cpa 3 per contact }", "cpa", "cap"),
    ("offer o { supress 7d after rejected }", "supress", "suppress"),
    ('offer o { contnet web { t "x" } }', "contnet", "content"),
    ("offer o { vaild 2026-01-01 to 2026-02-01 }", "vaild", "valid"),
    ("offer o { theme a }", "theme", "themes"),
    ("offer o { space web }", "space", "spaces"),  # a declaration's keyword, but no declaration follows
    ("offer o { categroy a }", "categroy", "category"),
    ("offer o { gruops g }", "gruops", "groups"),
    ("space s { chanel inbound }", "chanel", "channel"),
    ("space s { limt 1 }", "limt", "limit"),
    ("space s { falback o }", "falback", "fallback"),
    ("space s { feilds title }", "feilds", "fields"),
    ("ofer o { }", "ofer", "offer"),
    ("shcema contact { }", "shcema", "schema"),
    ("catgory c { }", "catgory", "category"),
    ("gruop g { }", "gruop", "group"),
    ("spcae s { }", "spcae", "space"),
    ('timezon "UTC"', "timezon", "timezone"),
    ("let x = if true than 1 else 2", "than", "then"),
    ("offer o { suppress 7d afer rejected }", "afer", "after"),
    ("offer o { cap 3 per contat per 7d }", "contat", "contact"),
    # where no name may follow a keyword, the lexer splits `lett` into `let` and `t`
    ("lett x = 1", "lett", "let"),
    ("offers o { }", "offers", "offer"),
    ("space s { limitt 3 }", "limitt", "limit"),
    ("offer o { eligiblee contact.age > 1 }", "eligiblee", "eligible"),
])
def test_a_misspelled_keyword_gets_did_you_mean(src, typo, keyword):
    d = error_of(src)
    assert d.hint == f"did you mean {keyword}?"
    assert underlined(src, d) == typo


def test_a_word_near_no_keyword_gets_no_guess():
    d = error_of("offer o { banana 1 }")
    assert d.message == "unexpected 'banana'" and d.hint is None


def test_a_keyword_in_capitals_is_told_keywords_are_lower_case():
    src = "offer o {\n  Eligible true\n}"
    d = error_of(src)
    assert d.hint == "keywords are lower case: eligible"
    assert underlined(src, d) == "Eligible"


# --- blocks left open


def test_a_block_left_open_is_named_at_its_opening_when_the_next_declaration_starts():
    src = "# gold\n\noffer gold_upgrade {\n  spaces web\n  weight 1\n\noffer silver {\n  spaces web\n}\n"
    d = error_of(src)
    assert d.message == "block `offer gold_upgrade {` is not closed before `offer` on line 7"
    assert (d.span.line, d.span.col) == (3, 1) and underlined(src, d) == "offer gold_upgrade {"
    assert d.hint == "add `}` at its end, before line 7; a declaration cannot go inside a block"


def test_a_block_left_open_at_the_end_of_the_file():
    src = 'offer a {\n  spaces web\n  content web { title "A" }\n'
    d = error_of(src)
    assert d.message == "block `offer a {` is not closed at the end of the file"
    assert (d.span.line, d.span.col) == (1, 1) and d.hint == "add `}` at its end"


@pytest.mark.parametrize("src,opened,line", [
    ('offer a {\n  content web { title "A"\n}\noffer b { }', "offer a {", 1),  # content took the `}`
    ("schema contact {\n  age: int\noffer b { }", "schema contact {", 1),  # `offer` read as a field
    ("category a.b {\n  cap 1 per decision\nlet x = 1", "category a.b {", 1),
    ('space s {\n  limit 1\ntimezone "UTC"', "space s {", 1),
    ("group g {\n  cap 1 per decision\n", "group g {", 1),
])
def test_the_open_block_is_named_whatever_comes_next(src, opened, line):
    d = error_of(src)
    assert d.message.startswith(f"block `{opened}` is not closed")
    assert d.span.line == line and underlined(src, d) == opened


def test_blocks_open_around_the_open_block_are_named_in_the_hint():
    src = 'offer a {\n  content web { title "A"\n\noffer b { }'  # `offer` read as a content field
    d = error_of(src)
    assert d.message == "block `content web {` is not closed before `offer` on line 4"
    assert (d.span.line, d.span.col) == (2, 3)
    assert d.hint.startswith("add `}` at its end, and one for `offer a {` (line 1), before line 4")


# --- durations


@pytest.mark.parametrize("clause,written,fix", [
    ("cap 3 per contact per 7days", "7days", "7d"),
    ("suppress 2w after rejected", "2w", "14d"),
    ("suppress 1.5h after rejected", "1.5h", "1h 30m"),
    ("suppress 1d12h after rejected", "1d12h", "1d 12h"),
    ("cap 1 total per 2 weeks", "2 weeks", "14d"),
    ("suppress 7D after rejected", "7D", "7d"),
    ("suppress 1y after rejected", "1y", "365d"),
    ("eligible proposed(o, 7days) == 0", "7days", "7d"),
    ("eligible proposed(o, 30 mins) == 0", "30 mins", "30m"),
    ("eligible proposed(o, 12H) == 0", "12H", "12h"),
])
def test_a_duration_with_a_unit_odl_lacks_gets_the_units_and_the_fix(clause, written, fix):
    src = f"offer o {{ {clause} }}"
    d = error_of(src)
    assert d.message == (f"`{written}` is not a duration: the units are "
                         "d (days), h (hours), m (minutes) and s (seconds)" + (", with whole numbers" if "." in written else ""))
    assert d.hint == f"write {fix}"
    assert underlined(src, d) == written


def test_the_units_named_are_the_language_s():
    d = error_of("offer o { suppress 2w after rejected }")
    assert [u for u in DURATION_UNITS if f" {u} (" in d.message] == list(DURATION_UNITS)


@pytest.mark.parametrize("clause,message,hint", [
    ("suppress 7 after rejected", "`7` is not a duration: a number needs a unit",
     "write a number and a unit, such as 7d, 12h or 1d 12h"),
    ("suppress 7x after rejected", "`7x` is not a duration: the units are",
     "write a number and a unit, such as 7d, 12h or 1d 12h"),
    # past 100 years, the most a duration may be: no fix offered
    ("suppress 99999w after rejected", "`99999w` is not a duration",
     "write a number and a unit, such as 7d, 12h or 1d 12h"),
    ("suppress 999999999999999999999w after rejected", "`999999999999999999999w` is not a duration",
     "write a number and a unit, such as 7d, 12h or 1d 12h"),
    ("suppress after rejected", "unexpected 'after'; expected a duration",
     "a duration is a number and a unit, d (days), h (hours), m (minutes) or s (seconds): such as 7d, 12h or 1d 12h"),
    ("cap 1 per contact per week", "unexpected 'week'",
     "write 7d (the last 7d) or calendar week (from the week's start)"),
    ("cap 1 per contact per 1month", "`1month` is not a duration",
     "write 30d (the last 30d) or calendar month (from the month's start)"),
])
def test_what_is_not_a_duration_is_explained(clause, message, hint):
    d = error_of(f"offer o {{ {clause} }}")
    assert d.message.startswith(message) and d.hint == hint


@pytest.mark.parametrize("src", ["let x = f(a,)", "let x = [1,]", "offer o { eligible a and ) }", "let x = (]"])
def test_a_stray_token_where_an_expression_goes_is_not_told_about_durations(src):
    """An expression may start with a duration, but a `)` after a comma is not a unit gone missing."""
    d = error_of(src + "\n")
    assert "expected an expression" in d.message and "duration" not in (d.hint or ""), (d.message, d.hint)


@pytest.mark.parametrize("number", ["9" * 5000, "1." + "9" * 5000])  # int() refuses 4,300 digits
def test_a_huge_number_before_a_unit_is_a_clean_error(number):
    d = error_of(f"offer o {{ suppress {number}w after rejected }}\n")
    assert d.message.startswith(f"`{number[:10]}") and "…` is not a duration: the units are d (days), h (hours), " \
        "m (minutes) and s (seconds)" in d.message
    assert d.span.end_col - d.span.col == len(number) + 1


# --- strings left open, text without quotes


@pytest.mark.parametrize("src,line,col", [
    ('offer o {\n  content web { title "Hello }\n}\n', 2, 23),
    ('let x = contact.country == "FR\nlet y = 1\n', 1, 28),
    ('let x = "ends in a backslash\\\n', 1, 9),
    ('let x = "no newline at the end', 1, 9),
])
def test_an_unclosed_string_is_named_at_its_opening_quote(src, line, col):
    d = error_of(src)
    assert d.message == "string is not closed"
    assert (d.span.line, d.span.col) == (line, col) and underlined(src, d).startswith('"')
    assert d.hint == 'add the closing " on the same line: a string cannot span lines (write \\n for a line break)'


@pytest.mark.parametrize("expr,word", [
    ("contact.product == CRD-BT", "CRD-BT"),
    ("contact.country == FR", "FR"),
    ('contact.product in ["A", CRD-BT]', "CRD-BT"),
    ("contact.product == crd-BT", "crd-BT"),
])
def test_unquoted_text_is_told_to_quote_it(expr, word):
    src = f"let x = {expr}\n"
    d = error_of(src)
    assert d.message == f"unexpected '{word}'; expected an expression"
    assert d.hint == f'text must be quoted: "{word}"'
    assert underlined(src, d) == word


def test_unquoted_text_inside_content_is_quoted_with_escapes():
    src = 'offer o { content web { title "{contact.product == CRD-BT}" } }'
    d = error_of(src)
    assert d.hint == 'text must be quoted: \\"CRD-BT\\"'
    assert underlined(src, d) == "CRD-BT"


def test_a_name_in_capitals_is_still_told_names_are_lower_case():
    d = error_of("let x = Contact.age > 1")
    assert d.hint == "names are lower case: [a-z_][a-z0-9_]*"


# --- words that start an expression are not misspelled keywords


@pytest.mark.parametrize("src,word,hint", [
    ("offer o { eligible contact.a > 1 contact.b > 2 }", "contact", "is an `and` or `or` missing before `contact`?"),
    ("offer o { eligible contact.a > 1 context.ch == \"x\" }", "context", "is an `and` or `or` missing before `context`?"),
    ("offer o { weight if contact.f them 1 else 2 }", "them", "did you mean then?"),  # not `themes`
    ("offer o { eligible contact.f == True }", "True", "keywords are lower case: true"),  # not "quote it"
    ("offer o { eligible Not contact.f }", "Not", "keywords are lower case: not"),
])
def test_an_expression_word_gets_the_hint_that_fits(src, word, hint):
    d = error_of(src)
    assert underlined(src, d) == word and d.hint == hint


def test_no_keyword_is_suggested_for_a_word_far_from_every_one():
    d = error_of("offer o { cap 3 per contact per 7d after }")
    assert d.hint is None or "category" not in d.hint


def test_a_number_without_a_unit_is_quoted_without_the_space_after_it():
    src = "offer o { cap 3 per contact per 7 }"
    d = error_of(src)
    assert d.message.startswith("`7` is not a duration") and underlined(src, d) == "7"
