"""Generated code reaches no builtin, import, dunder attribute or file, whatever the catalog says.

Catalogs name their attributes, lets, offers, spaces, categories, fields and themes after the
known escapes of Python expression sandboxes (`__class__`, `__globals__`, `__import__`,
`gi_frame`, `eval`, Python keywords, the generator's own `_p0`/`_rt_len` names, very long
names), and put format fields, quotes, backslashes and `#` in strings and content templates.
Each such catalog is refused with a diagnostic, or it compiles, and then:

- its generated source has the very same Python tokens as the same catalog with plain names,
  strings and comments aside: no user text is ever a Python identifier;
- every name in the compiled code objects (globals, attributes, locals) is one the code
  generator emits: the runtime namespace, its constants, a few fixed method names;
- decisions run, and hostile attribute values render as the plain text they are.
"""
from __future__ import annotations

import datetime
import io
import keyword
import re
import tokenize
import types

import pytest

from offerd import lang
from offerd.compiler import Moment, SpaceCache, compile_expression, compile_space
from offerd.compiler import runtime
from offerd.compiler.analysis import SpacePlan
from offerd.compiler.parts import SpaceCodegen
from offerd.history import MemoryHistory, Proposition
from offerd.lang import CatalogError
from offerd.lang.functions import template_attributes

NOW = datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.timezone.utc)

# --- what generated code may name ------------------------------------------------------------------

RUNTIME = set(runtime.namespace()) - {"__builtins__"}
# attributes the generator reads: dict.get on the inputs, Moment and history fields,
# list.append, and the methods the functions' templates call (str.lower, date.toordinal ...);
# nothing else, and nothing starting with _
METHODS = {"get", "now", "ts", "today", "local", "count", "total", "propensity", "append"} | template_attributes()
ENTRY_POINTS = {"_evaluate", "_explain", "_top", "_renderers", "_value", "_truth", "_falsity"}
CONST = re.compile(r"_k[0-9]+\Z")
RENDERER = re.compile(r"_render_[0-9]+\Z")
LOCAL = re.compile(r"_[a-z]{1,5}[0-9]*\Z")  # _c _x _m _h _el _ap _p0 _l0 _s0 _t1 _w _need _fails ...


def code_objects(code: types.CodeType):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from code_objects(c)


def assert_only_generator_names(source: str, consts: dict) -> None:
    """Every global, attribute and local name of the compiled source is one the generator
    emits; none is a dunder; no attribute read starts with _."""
    for code in code_objects(compile(source, "<generated>", "exec")):
        for name in code.co_names:
            assert not name.startswith("__"), f"dunder {name} in generated code"
            assert (name in RUNTIME or name in METHODS or name in ENTRY_POINTS or RENDERER.match(name)
                    or (CONST.match(name) and name in consts)), f"unexpected name {name!r} in generated code"
        for name in code.co_varnames + code.co_cellvars + code.co_freevars:
            assert LOCAL.match(name), f"unexpected local {name!r} in generated code"


def python_shape(source: str) -> list[tuple[int, str]]:
    """The source's Python tokens, with every string literal's text and every comment dropped."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            continue
        out.append((tok.type, "" if tok.type == tokenize.STRING else tok.string))
    return out


PARTS = {
    "evaluate": lambda gen: gen.evaluate_source(),
    "explain": lambda gen: gen.evaluate_source(explain=True),
    "top": lambda gen: gen.evaluate_source(top=True),
    "render": lambda gen: gen.render_source(),
}


def generated_sources(catalog) -> dict[str, tuple[str, dict]]:
    """Every module the compiler makes for the catalog's spaces, as `offerd compile
    --show-source` shows it, with the constants it is compiled with."""
    out = {}
    for space in catalog.spaces:
        compiled = compile_space(catalog, space, SpaceCache())
        for part, make in PARTS.items():
            gen = SpaceCodegen(catalog, space, SpacePlan(catalog, space))
            source = make(gen)
            assert source == (compiled.source if part == "evaluate" else compiled.source_of(part))
            out[f"{space}/{part}"] = (source, gen.consts)
    return out


# --- one catalog, every kind of user name in it --------------------------------------------------------

TEMPLATE = r"""
timezone "Europe/Paris"
schema contact { @A@: string  @B@: int  @TAGS@: set<string> }
schema context { @A@: string }
let @L@ = contact.@B@ ?? 0 >= 18
let @L2@ = lower(contact.@A@ ?? "")
space @S@ { channel inbound  limit 3  fallback @FB@  fields @F@, @F2@?  cap 50 per contact per 1d }
space @S2@ { channel outbound  limit 1 }
category @C@ { eligible @L@ or not @L@ or true }
category @C@.@C2@ { cap 20 per contact per 7d }
offer @O@ {
  category @C@.@C2@
  themes @T@, @T2@
  spaces @S@, @S2@
  eligible @L2@ != "'); __import__('os').system('rm'); ('" and not ("__class__" in contact.@TAGS@)
  eligible in @S@: context.@A@ ?? "" != "{0.__class__}" and len(@L2@) >= 0
  weight 100 + (contact.@B@ ?? 1) + proposed(@O@, 7d) + rejected(@C@.@C2@, 1d) + propensity
  weight in @S2@: if has(contact.@A@) then 1 else 2
  cap 30 per contact per 7d
  suppress 1d after rejected
  content @S@ { @F@ "Hi {contact.@A@ ?? \"you\"} {{0.__class__}} {{x.__init__.__globals__}} %s %(x)s {@L2@}", @F2@ "{contact.@B@}\"\"\"'''\\ # not a comment {starts_with(@L2@, \"{\")}" }
  content @S2@ { @F@ "{bucket(contact.@A@, 10)} {format_date(now, \"%A %d %B %Y %H:%M %% %%(x)s\")} {format_number(contact.@B@ ?? 0, 2)} {round((contact.@B@ ?? 0) / 3, 2)} {join(contact.@TAGS@, \"{0.__class__}\")} {hour(now)}/{weekday(today)}/{month(now)} {contact.id}" }
  eligible in @S2@: bucket(contact.id ?? "", 100) >= 0
  valid 2026-01-01T00:00 to 2099-12-31
}
offer @FB@ { spaces @S@  content @S@ { @F@ "fallback {@L@}" } }
"""
# forty more offers with bounded weights, so the space is ranked by bound (the `_top` variant)
FILLERS = "".join(f'offer @O@_{i} {{ spaces @S@  weight {i}  content @S@ {{ @F@ "n{i}" }} }}\n' for i in range(40))
SLOTS = ("A", "B", "TAGS", "L", "L2", "S", "S2", "FB", "F", "F2", "C", "C2", "O", "T", "T2")
PLAIN = {slot: f"plain_{slot.lower()}" for slot in SLOTS}


def catalog_text(names: dict[str, str]) -> str:
    return re.sub(r"@(\w+)@", lambda m: names[m.group(1)], TEMPLATE + FILLERS)


def hostile(a: str, b: str, c: str) -> dict[str, str]:
    """Three hostile names over every slot; names that share a namespace stay distinct."""
    return {"A": a, "B": b, "TAGS": c, "L": a, "L2": b, "S": a, "S2": b, "FB": b, "F": a, "F2": b,
            "C": a, "C2": b, "O": a, "T": a, "T2": c}


LONG = "a" * 5000
# valid ODL names: each must compile, and then prove it reached no Python identifier
COMPILING = [
    ("__class__", "__globals__", "__builtins__"),
    ("__import__", "__subclasses__", "__mro__"),
    ("__init__", "__dict__", "__getattribute__"),
    ("__code__", "__closure__", "__reduce_ex__"),
    ("gi_frame", "f_globals", "f_back"),
    ("eval", "exec", "open"),
    ("getattr", "globals", "compile"),
    ("os", "sys", "system"),
    ("lambda", "import", "class"),
    ("def", "return", "yield"),
    ("global", "nonlocal", "del"),
    ("while", "for", "with"),
    ("async", "await", "pass"),
    ("is", "from", "raise"),
    ("_p0", "_k0", "_l0"),
    ("_c", "_x", "_m"),
    ("_h", "_el", "_ap"),
    ("_rt_len", "_rt_text", "_rt_join"),
    ("_rt_bucket", "_rt_best", "_rt_int_limit"),
    ("_evaluate", "_renderers", "_render_0"),
    ("_now", "_today", "_ts"),
    ("_w", "_fa", "_fails"),
    ("_need", "_skip", "_go"),
    ("_s0", "_t1", "_tdo"),
    ("_hc", "_ht", "_hp"),
    (LONG, "b" * 5000, "_" * 300),
]


def _id(names):
    return "-".join(n if len(n) < 20 else f"{n[0]}x{len(n)}" for n in names)


def test_the_plain_catalog_compiles_every_part():
    catalog = lang.check({"c.offer": catalog_text(PLAIN)})
    assert set(catalog.spaces) == {"plain_s", "plain_s2"}
    assert compile_space(catalog, "plain_s", SpaceCache()).ranks_by_bound  # `_top` is generated too


@pytest.mark.parametrize("names", COMPILING, ids=_id)
def test_hostile_names_never_become_python_names(names):
    plain = generated_sources(lang.check({"c.offer": catalog_text(PLAIN)}))
    text = catalog_text(hostile(*names))
    catalog = lang.check({"c.offer": text})  # compiles: these are all valid ODL names
    sources = generated_sources(catalog)
    assert len(sources) == len(plain) == 8
    for key, (source, consts) in sources.items():
        space, part = key.split("/")
        plain_source = plain[f"{PLAIN['S' if space == names[0] else 'S2']}/{part}"][0]
        assert python_shape(source) == python_shape(plain_source), f"{key}: the user's names changed the code"
        assert_only_generator_names(source, consts)
        python_names = {t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                        if t.type == tokenize.NAME}
        for name in names:  # the generator's own names (_p0, _rt_len, `is`) may appear, as the generator's
            if not (name in RUNTIME | METHODS | ENTRY_POINTS or LOCAL.match(name) or RENDERER.match(name)
                    or keyword.iskeyword(name)):
                assert name not in python_names, f"{key}: {name} is a Python name in the generated code"
    assert_decides_and_renders_plain_text(catalog, hostile(*names))


HOSTILE_VALUES = ["{__class__}", "%s", "%(x)s", "{0}", "{0.__class__.__mro__}", "{x.__init__.__globals__}",
                  "'); __import__('os').system('x'); ('", '"""', "'''", "\\", "\\n", "\n", "# not a comment",
                  "\x00", "\ud800", "\U0001f600", "{{}}", "{!r}", "{:>10}", "__import__('os')"]


def assert_decides_and_renders_plain_text(catalog, names: dict[str, str]) -> None:
    """Run the space with hostile attribute values: content is the values as plain text."""
    space = names["S"]
    compiled = compile_space(catalog, space, SpaceCache())
    moment = Moment.at(NOW, catalog.timezone)
    history = MemoryHistory([Proposition("c1", names["O"], space, (names["C"], f"{names['C']}.{names['C2']}"),
                                         moment.ts - 3600, {"rejected": moment.ts - 7200})]).view("c2")
    offer = [o.name for o in compiled.offers].index(names["O"])
    for value in HOSTILE_VALUES:
        contact = {names["A"]: value, names["B"]: 42, names["TAGS"]: frozenset({value})}
        context = {names["A"]: "ok"}
        eligible = compiled.evaluate(contact, context, moment, history)
        outcomes = compiled.explain(contact, context, moment, history)
        assert offer in [pos for pos, _ in eligible], (value, outcomes[offer])
        assert outcomes[offer].eligible
        rendered = compiled.render(offer, contact, context, moment, history)
        assert rendered == {
            names["F"]: f"Hi {value} {{0.__class__}} {{x.__init__.__globals__}} %s %(x)s {value.lower()}",
            names["F2"]: f"42\"\"\"'''\\ # not a comment {str(value.lower().startswith('{')).lower()}",
        }
        assert compiled.render_fallback(contact, context, moment, history) == {names["F"]: "fallback true"}


# --- names and text the language refuses ---------------------------------------------------------------

REFUSED = {
    # unicode that NFKC-normalizes to a dunder or a builtin: Python would read these as the
    # ASCII name, ODL names are ASCII
    "fullwidth dunder": "schema contact { ＿＿import＿＿: string }",
    "fullwidth letters": "let ｅｖａｌ = 1",
    "mathematical letters": "let 𝐨𝐩𝐞𝐧 = 1",
    "ligature": "let ﬁle = 1",
    "cyrillic a": "space wеb { }",  # the e is U+0435
    "dotless i": "let __ımport__ = 1",
    "upper case": "let __Class__ = 1",
    "digits of other scripts": "space web { limit ٣ }",
    "dotted offer": "offer a.__class__ { }",
    "dash in a name": "let a-b = 1",
    "quote in a name": "let a'b = 1",
    "hash in a name": "space we#b { }",
    # expressions that are Python, not ODL
    "attribute chain": "let x = contact.a.__class__",
    "dunder path": "let x = contact.__class__.__mro__",
    "import call": 'let x = __import__("os")',
    "eval": 'let x = eval("1")',
    "open": 'let x = open("/etc/passwd")',
    "getattr": 'let x = getattr(contact, "a")',
    "generator frame": "let x = (lambda: 1).gi_frame",
    "subscript": "let x = contact['a']",
    "lambda": "let x = lambda: 1",
    "string method": 'let x = "".join',
    "call on a value": 'let x = "a".upper()',
    "semicolon": "let x = 1; import os",
    "walrus": "let x = (y := 1)",
    "backslash continuation": "let x = 1 \\\n + 1",
    "raw newline in a string": 'let x = "a\nb"',
    "unknown escape": r'let x = "\x41"',
    "python octal": "let x = 0o17",
    "exponent": "let x = 1e308",
    # content templates that are str.format, not ODL
    "format field": 'content web { title "{0.__class__}" }',
    "format attribute chain": 'content web { title "{x.__init__.__globals__}" }',
    "format spec": 'content web { title "{contact.s:>10}" }',
    "format conversion": 'content web { title "{contact.s!r}" }',
    "dunder in template": 'content web { title "{contact.__class__}" }',
    "import in template": 'content web { title "{__import__(\\"os\\")}" }',
    "empty field": 'content web { title "{}" }',
    "unclosed field": 'content web { title "{contact.s" }',
    "stray brace": 'content web { title "a } b" }',
    "timezone breakout": 'timezone "UTC\\"); __import__(\\"os\\"); (\\""',
}
HEADER = "schema contact { s: string  a: int }\nspace web { fields title }\n"


def refused_source(body: str) -> str:
    if body.startswith("content"):
        return HEADER + f"offer o {{ spaces web  {body} }}\n"
    return HEADER + body + "\n"


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_python_escapes_are_refused_with_a_diagnostic(body):
    source = refused_source(body)
    with pytest.raises(CatalogError) as caught:
        lang.check({"c.offer": source})
    errors = caught.value.errors
    assert errors
    for d in errors:
        assert d.span.file == "c.offer" and d.span.line >= 1 and d.message.strip(), d
    assert caught.value.render().startswith("c.offer:")


# --- strings that try to leave their literal -------------------------------------------------------------

BREAKOUTS = [
    r"'); __import__('os').system('x'); ('",
    r"\"\"\" + __import__('os') + \"\"\"",
    r"''' + __import__('os') + '''",
    r"\\",
    r"\\\"",
    r"a\nb\tc",
    r"# the rest is a comment",
    "\x00 NUL \x01 \x1b[31m \x7f",
    "\u2028 line separator \u2029 \x85",
    "\ud800 lone surrogate \udfff",
    "\U0001f600 \ufeff",
    r"{{0.__class__}} {{__import__}} %s %r %(x)s",
    "x" * 60_000,
]


def odl_value(raw: str) -> str:
    """What an ODL string literal written as `raw` holds."""
    return raw.replace("\\\\", "\0b").replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\0b", "\\")


@pytest.mark.parametrize("raw", BREAKOUTS, ids=lambda r: repr(r[:24]))
def test_strings_stay_string_literals(raw):
    template = raw.replace("{{", "\0o").replace("}}", "\0c")
    expected_content = odl_value(template).replace("\0o", "{").replace("\0c", "}")
    source = (HEADER + f'let x = "{raw}"\n'
              f'offer o {{ spaces web  eligible contact.s == x or contact.s != x or true\n'
              f'  weight if contact.s == "{raw}" then 2 else 1\n'
              f'  content web {{ title "{raw}{{contact.s ?? x}}" }} }}\n')
    catalog = lang.check({"c.offer": source})
    compiled = compile_space(catalog, "web", SpaceCache())
    sources = generated_sources(catalog)
    for key, (generated, consts) in sources.items():
        assert_only_generator_names(generated, consts)
        assert "__import__" not in {t.string for t in tokenize.generate_tokens(io.StringIO(generated).readline)
                                    if t.type == tokenize.NAME}, key
    moment = Moment.at(NOW)
    history = MemoryHistory([]).view(None)
    value = odl_value(raw)
    assert compiled.evaluate({"s": value}, {}, moment, history) == [(0, 2)]
    assert compiled.evaluate({}, {}, moment, history) == [(0, 1)]
    assert compiled.render(0, {}, {}, moment, history) == {"title": expected_content + value}
    assert compiled.render(0, {"s": "{__class__}"}, {}, moment, history) == {"title": expected_content + "{__class__}"}


def test_expressions_compiled_alone_name_only_generator_names():
    names = hostile("__class__", "__globals__", "__builtins__")
    catalog = lang.check({"c.offer": catalog_text(names)})
    text = ("if has(contact.__class__) and lower(contact.__class__ ?? \"\") in contact.__builtins__ "
            "then days_since(today) + bucket(contact.__globals__ ?? 0, 7) + proposed(__class__.__globals__, 1d) "
            "else len(__globals__) + propensity")
    compiled = compile_expression(catalog, text, offer="__class__")
    assert_only_generator_names(compiled.source, {k: None for k in re.findall(r"_k[0-9]+", compiled.source)})
    moment = Moment.at(NOW, catalog.timezone)
    history = MemoryHistory([]).view("c")
    assert compiled.value({"__class__": "{0}", "__builtins__": frozenset({"{0}"})}, {}, moment, history) == \
        0 + runtime.bucket(0, 7) + 0
    assert compiled.value({"__globals__": 3}, {}, moment, history) == 0 + 0.5  # len("") + propensity (1/2)


# --- the namespace itself --------------------------------------------------------------------------------


def test_the_namespace_has_empty_builtins_and_only_plain_helpers():
    ns = runtime.namespace()
    assert ns["__builtins__"] == {}
    for name, value in ns.items():
        if name == "__builtins__":
            continue
        assert name.startswith("_rt_"), name
        assert isinstance(value, (int, types.FunctionType, types.BuiltinFunctionType, type)), (name, value)
        if isinstance(value, type):
            assert value is float, name  # a constructor of plain floats, nothing more
    assert runtime.namespace() is not ns and runtime.namespace()["__builtins__"] is not ns["__builtins__"]


def test_compiled_functions_see_only_the_namespace():
    catalog = lang.check({"c.offer": catalog_text(hostile("__class__", "__globals__", "__builtins__"))})
    compiled = compile_space(catalog, "__class__", SpaceCache())
    gen = SpaceCodegen(catalog, "__class__", SpacePlan(catalog, "__class__"))
    gen.evaluate_source()
    for fn in (compiled.evaluate, compiled._part("explain"), compiled._part("top")):
        g = fn.__globals__
        assert g["__builtins__"] == {}
        extra = set(g) - set(runtime.namespace()) - ENTRY_POINTS
        assert all(CONST.match(k) for k in extra), extra
        for k in extra:  # constants are dates and history keys (kind, name): data, not code
            v = g[k]
            assert isinstance(v, datetime.date) or (
                isinstance(v, tuple) and all(isinstance(x, str) for x in v)), (k, v)
    # without builtins, even a name the generator never emits fails: no fallback to Python's
    with pytest.raises(NameError):
        exec("open", dict(runtime.namespace()))
    with pytest.raises(NameError):
        exec("__import__('os')", dict(runtime.namespace()))
