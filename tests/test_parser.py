"""Parser: expression trees (golden), spans, syntax errors."""
import datetime
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from golden import FIXTURES

from offerd.lang import nodes as n
from offerd.lang.diagnostics import Reporter
from offerd.lang.parser import parse, parse_expr


def dump(e) -> str:
    """A fully parenthesised rendering of an expression tree."""
    if isinstance(e, n.Literal):
        if e.lit_type.name == "duration":
            return f"{e.value}s"
        if isinstance(e.value, bool):
            return str(e.value).lower()
        if isinstance(e.value, str):
            return '"' + e.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(e.value, datetime.date):
            return e.value.isoformat()
        return repr(e.value)
    if isinstance(e, n.Name):
        return e.name
    if isinstance(e, n.Path):
        return ".".join(e.parts)
    if isinstance(e, n.ListLiteral):
        return "[" + " ".join(map(dump, e.items)) + "]"
    if isinstance(e, n.Unary):
        return f"({e.op} {dump(e.operand)})"
    if isinstance(e, n.Binary):
        return f"({e.op} {dump(e.left)} {dump(e.right)})"
    if isinstance(e, n.Cond):
        return f"(if {dump(e.test)} {dump(e.then)} {dump(e.orelse)})"
    if isinstance(e, n.Call):
        return "(" + " ".join([e.fn] + [dump(a) for a in e.args]) + ")"
    raise AssertionError(type(e))


def expression_cases():
    lines = (FIXTURES / "parse" / "expressions.txt").read_text().splitlines()
    return [pytest.param(*line.split(" => "), id=line.split(" => ")[0])
            for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("source,expected", expression_cases())
def test_expression_tree(source, expected):
    report = Reporter()
    tree = parse_expr(source, "<t>", report)
    assert not report.diagnostics, [d.render() for d in report.diagnostics]
    assert dump(tree) == expected


def test_comparisons_do_not_chain():
    report = Reporter()
    assert parse_expr("a < b < c", "<t>", report) is None
    assert "unexpected '<'" in report.diagnostics[0].message


def test_spans_point_at_the_source():
    src = 'offer o {\n  eligible contact.age >= 18 and context.page != "x"\n}\n'
    report = Reporter()
    module = parse(src, "o.offer", report)
    rule = module.decls[0].items[0]
    left, right = rule.expr.left, rule.expr.right
    assert (left.span.line, left.span.col, left.span.end_col) == (2, 12, 29)
    assert (right.span.line, right.span.col, right.span.end_col) == (2, 34, 53)
    assert (left.left.span.col, left.left.span.end_col) == (12, 23)  # contact.age


def test_keywords_are_names_where_no_keyword_fits():
    src = ("schema contact { total: int  limit: int  content: string }\n"
           "let x = contact.total + contact.limit\n")
    report = Reporter()
    module = parse(src, "k.offer", report)
    assert not report.diagnostics
    assert [f.name for f in module.decls[0].fields] == ["total", "limit", "content"]


def test_template_parts_and_escapes():
    src = 'offer o { content s { t "a {{b}} {contact.x ?? \\"y\\"} c\\n" } }'
    report = Reporter()
    module = parse(src, "t.offer", report)
    assert not report.diagnostics
    template = module.decls[0].items[0].fields[0].value
    assert template.parts[0] == "a {b} "
    assert dump(template.parts[1]) == '(?? contact.x "y")'
    assert template.parts[2] == " c\n"
    assert template.parts[1].span.col == src.index("contact.x") + 1


def test_unknown_escape_is_an_error():
    report = Reporter()
    parse('let x = "a\\qb"', "e.offer", report)
    assert report.diagnostics[0].message == "unknown escape \\q in string"
    assert report.diagnostics[0].span.col == 11


@pytest.mark.parametrize("depth", [10, 48])
def test_nesting_up_to_the_limit_parses(depth):
    report = Reporter()
    assert parse_expr("not " * (depth - 1) + "true", "<t>", report) is not None
    assert not report.diagnostics


def test_long_and_or_chains_nest_logarithmically_and_keep_their_order():
    report = Reporter()
    e = parse_expr(" or ".join(f"x{i}" for i in range(500)), "<t>", report)
    assert not report.diagnostics and e.depth <= 20
    leaves, stack = [], [e]
    while stack:  # left to right
        x = stack.pop()
        if isinstance(x, n.Binary) and x.op == "or":
            stack += [x.right, x.left]
        else:
            leaves.append(x.name)
    assert leaves == [f"x{i}" for i in range(500)]
    # precedence is untouched: `and` binds tighter, inside the `or` chain
    assert parse_expr("a or b and c or d", "<t>", report) == parse_expr("(a or (b and c)) or d", "<t>", report)
    e = parse_expr("a and b and c and d", "<t>", report)  # ((a and b) and (c and d))
    assert (e.span.col, e.span.end_col, e.right.span.col, e.right.span.end_col) == (1, 20, 13, 20)
    assert not report.diagnostics


def _kleene(e, env):
    if isinstance(e, n.Name):
        return env[e.name]
    if isinstance(e, n.Unary):
        x = _kleene(e.operand, env)
        return None if x is None else not x
    a, b = _kleene(e.left, env), _kleene(e.right, env)
    decides = e.op == "or"  # True decides `or`, False decides `and`
    if a is decides or b is decides:
        return decides
    return None if a is None or b is None else not decides


def AND(a, b):
    return False if a is False or b is False else (None if a is None or b is None else True)


def OR(a, b):
    return True if a is True or b is True else (None if a is None or b is None else False)


@pytest.mark.parametrize("text,meaning", [
    ("a and b and c or d", lambda a, b, c, d, e: OR(AND(AND(a, b), c), d)),
    ("a or b or c and d", lambda a, b, c, d, e: OR(OR(a, b), AND(c, d))),
    ("(a or b or c) and d", lambda a, b, c, d, e: AND(OR(OR(a, b), c), d)),
    ("(a and b and c) or d and e", lambda a, b, c, d, e: OR(AND(AND(a, b), c), AND(d, e))),
    ("a and (b or c or d) and e", lambda a, b, c, d, e: AND(AND(a, OR(OR(b, c), d)), e)),
    ("not (a or b or c) and d and e or a", lambda a, b, c, d, e: OR(AND(AND(OR(OR(a, b), c) is False
                                                                             if OR(OR(a, b), c) is not None else None,
                                                                             d), e), a)),
    ("a and b and c and d and e or a and b and c", lambda a, b, c, d, e: OR(AND(AND(AND(AND(a, b), c), d), e),
                                                                             AND(AND(a, b), c))),
])
def test_mixed_and_or_chains_mean_what_they_say(text, meaning):
    """Balanced chains never mix operators: every assignment of true, false and null to the
    names gives the value of the expression read left to right with `and` binding tighter."""
    report = Reporter()
    e = parse_expr(text, "<t>", report)
    assert not report.diagnostics
    for values in itertools.product((True, False, None), repeat=5):
        env = dict(zip("abcde", values))
        assert _kleene(e, env) == meaning(*values), (text, env)


def _boolean_text(draw, depth=0) -> str:
    """A random expression of the names a-e with `and`, `or`, `not` and brackets."""
    parts = []
    for i in range(draw(st.integers(1, 7 if depth < 2 else 3))):
        if i:
            parts.append(draw(st.sampled_from(["and", "or"])))
        atom = draw(st.sampled_from("abcde")) if depth >= 2 or draw(st.booleans()) else f"({_boolean_text(draw, depth + 1)})"
        parts.append("not " * draw(st.integers(0, 1)) + atom)
    return " ".join(parts)


def _read(tokens: list[str], env: dict):
    """Reads ODL's and/or/not by recursive descent (`or` below `and` below `not`), with
    Kleene values: an oracle that shares nothing with the Lark grammar or the tree."""
    def chain(op, combine, operand):
        x = operand()
        while tokens and tokens[0] == op:
            tokens.pop(0)
            x = combine(x, operand())
        return x

    def disjunction():
        return chain("or", OR, conjunction)

    def conjunction():
        return chain("and", AND, negation)

    def negation():
        t = tokens.pop(0)
        if t == "not":
            x = negation()
            return None if x is None else not x
        if t == "(":
            x = disjunction()
            assert tokens.pop(0) == ")"
            return x
        return env[t]

    return disjunction()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_and_or_not_agree_with_an_independent_reader(data):
    text = _boolean_text(data.draw)
    e = parse_expr(text, "<t>", Reporter())
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    for values in itertools.product((True, False, None), repeat=5):
        env = dict(zip("abcde", values))
        assert _kleene(e, env) == _read(list(tokens), env), (text, env)


def test_a_chain_past_its_limit_is_one_clean_error():
    report = Reporter()
    assert parse_expr(" or ".join(["x"] * 4096), "<t>", report) is not None and not report.diagnostics
    assert parse_expr(" and ".join(["x"] * 4097), "<t>", report) is None
    assert [d.message for d in report.diagnostics] == ["more than 4096 conditions joined by `and`"]


def test_nesting_past_the_limit_is_one_clean_error():
    report = Reporter()
    assert parse_expr("not " * 10_000 + "true", "<t>", report) is None
    assert len(report.diagnostics) == 1
    assert "nested more than 48 levels" in report.diagnostics[0].message


@pytest.mark.parametrize("text", [
    'f(contact.a, [1, 2.5], "q\\"x\\n\\\\", 2026-01-02, 1d 12h, true, false) ?? -(x) + 1',
    "(if a then b else not c) and d not in [1] or (e.f ?? 2) * 3 % (4 - 5) / 6",
])
def test_expressions_are_written_back_as_read(text):
    """precedence.source, which the `??` warning quotes: the same text, brackets where written."""
    from offerd.lang.precedence import source

    report = Reporter()
    e = parse_expr(text, "<t>", report)
    assert source(e) == text
    assert parse_expr(source(e), "<t>", report) == e and not report.diagnostics
