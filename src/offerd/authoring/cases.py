"""Catalog tests as a rule author writes them (`*.test.toml` beside the `*.offer` files):
read and checked against the catalog, every mistake one line with its file and line."""
from __future__ import annotations

import datetime
import os
import re
import tomllib
from dataclasses import dataclass

from ..decide_view import OUTCOMES
from ..domain import STATUSES
from ..lang.catalog import CONTACT_ID, Catalog
from ..lang.diagnostics import did_you_mean
from ..lang.values import InputError, check_attributes
from ..store import Contact

SUFFIX = ".test.toml"
MAX_COUNT = 10_000  # propositions one history entry may stand for
# an explain kind by the engine's name (as --json shows it) or as `offerd decide --explain` says it
KINDS = {"won": "won", **{k: k for k in OUTCOMES}, **{text: k for k, text in OUTCOMES.items()}}
REQUEST_KEYS = ("time", "spaces", "contact", "context", "history", "max_offers", "categories", "themes")
CASE_KEYS = ("name", *REQUEST_KEYS, "expect", "expect_content", "expect_explain")
_HEAD = re.compile(r"\s*\[\[\s*case\s*\]\]")
_DEFAULTS = re.compile(r"\s*\[\s*defaults\s*\]")
_EARLIEST = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)  # as a request's time_us takes them
_LATEST = datetime.datetime(9999, 12, 30, 23, 59, 59, tzinfo=datetime.timezone.utc)
_WHERE = re.compile(r"\s*\(at line (\d+), column \d+\)\Z")


@dataclass(frozen=True)
class Past:
    """Propositions made before the case's time, with the status reported for them."""

    offer: str
    space: str
    at: datetime.datetime
    status: str = "proposed"
    status_at: datetime.datetime | None = None  # when the status was reported; None: at `at`
    contact: str | None = None  # None: the case's contact
    count: int = 1


@dataclass(frozen=True)
class Reason:
    """What the explain of an offer must say: its kind, the rule that removed it (its
    `file:line[:col]` or a piece of its text), the clause that was not true (a piece of it)."""

    kind: str | None = None
    rule: str | None = None
    clause: str | None = None


@dataclass(frozen=True)
class Case:
    file: str  # the test file's name in its folder
    line: int  # its [[case]] line
    name: str
    time: datetime.datetime
    spaces: tuple[str, ...]
    contact_id: str | None
    attributes: dict
    context: dict
    history: tuple[Past, ...]
    max_offers: int | None
    categories: tuple[str, ...]
    themes: tuple[str, ...]
    expect: dict[str, tuple[str, ...]]  # space → offers in order
    content: dict[str, dict[str, dict[str, str]]]  # space → offer → field → text
    explain: dict[str, dict[str, Reason]]  # space → offer → what its explain says

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


class CaseError(Exception):
    """Test files that cannot run: `.lines`, one per mistake, `path:line: error: message`."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


def files_in(folder: str) -> list[str]:
    """The names of the folder's test files, sorted."""
    return sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX) and os.path.isfile(os.path.join(folder, n)))


def read(folder: str, catalog: Catalog, names: list[str] | None = None) -> list[Case]:
    """Every case of the folder's test files, in file then written order; CaseError with
    every mistake found."""
    errors: list[str] = []
    cases = []
    for name in files_in(folder) if names is None else names:
        mine: list[str] = []
        cases += _File(folder, name, catalog, mine).cases()
        errors += sorted(mine, key=_line)  # in the file's order
    if errors:
        raise CaseError(errors)
    return cases


def _line(error: str) -> int:
    at = re.search(r":(\d+): error: ", error)
    return int(at[1]) if at else 0


class _Bad(Exception):
    def __init__(self, message: str, *needles: str):
        self.message, self.needles = message, needles


def _known(what: str, name, known) -> str:
    if not isinstance(name, str):
        raise _Bad(f"{what} names are strings, not {_show(name)}")
    if name not in known:
        hint = did_you_mean(name, known)
        raise _Bad(f"unknown {what} {name!r}" + (f"; {hint}" if hint else ""), name)
    return name


def _show(v) -> str:
    return repr(v) if isinstance(v, str) else f"{type(v).__name__} {v}"


def _table(v, what: str, needle: str) -> dict:
    if not isinstance(v, dict):
        raise _Bad(f"{what} is a table ({{ ... }}), not {_show(v)}", needle)
    return v


def _strings(v, what: str, needle: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"{what} is a list of strings, such as [\"a\", \"b\"]", needle)
    return v


def _keys(table: dict, allowed, what: str) -> None:
    for key in table:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            raise _Bad(f"unknown key {key!r} in {what}" + (f"; {hint}" if hint else f"; keys: {', '.join(allowed)}"),
                       key)


def _contact_id(v, what: str, needle: str) -> str:
    if not isinstance(v, str):
        raise _Bad(f"{what} is a contact id (a string), not {_show(v)}", needle)
    try:
        Contact(v).key()
    except ValueError as e:
        raise _Bad(f"{what} {v!r}: {e}", needle) from None
    return v


def time_of(v, what: str) -> datetime.datetime:
    """An aware time: a TOML offset date-time or an ISO string with an offset or Z."""
    if isinstance(v, str):
        if "T" not in v.upper() and " " not in v.strip():
            raise _Bad(f"{what} {v!r} is a date: give a date and time with an offset, such as {v}T10:00:00+01:00",
                       what)
        try:
            v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad(f"{what} {v!r} is not an ISO time such as 2026-11-23T10:00:00+01:00", what) from None
    if not isinstance(v, datetime.datetime):
        raise _Bad(f"{what} is a date and time with an offset, such as 2026-11-23T10:00:00+01:00, not {_show(v)}",
                   what)
    if v.tzinfo is None:
        raise _Bad(f"{what} {v.isoformat()} has no timezone: add an offset or Z (such as {v.isoformat()}Z)", what)
    try:
        inside = _EARLIEST < v <= _LATEST
    except OverflowError:  # a date at the calendar's ends, whose offset takes it past them
        inside = False
    if not inside:
        raise _Bad(f"{what} {v.isoformat()} is outside the times a decision may have, 1970 to 9999-12-30", what)
    return v


class _File:
    """One test file: its text, where its cases start, the mistakes found in it."""

    def __init__(self, folder: str, name: str, catalog: Catalog, errors: list[str]):
        self.path, self.name, self.catalog, self.errors = os.path.join(folder, name), name, catalog, errors
        self.lines: list[str] = []
        self.themes = {t for o in catalog.offers for t in o.themes}

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.path}:{line}: error: {message}")

    def line_of(self, span: tuple[int, int], needles) -> int:
        """The first line in `span` holding every needle as a word, else every needle but the
        last, and so on; else `span`'s first line."""
        words = [re.compile(rf"(?<!\w){re.escape(str(n))}(?!\w)") for n in needles if n]
        lines = range(span[0], min(span[1], len(self.lines)) + 1)
        for wanted in (words[:n] for n in range(len(words), 0, -1)):
            for i in lines:
                if all(w.search(self.lines[i - 1]) for w in wanted):
                    return i
        return span[0]

    def cases(self) -> list[Case]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            self.errors.append(f"{self.path}: error: cannot read it: {e.strerror}")
            return []
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.error(data[:e.start].count(b"\n") + 1, f"not valid UTF-8 (byte {e.start})")
            return []
        self.lines = text.splitlines()
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            said = str(e)
            at = _WHERE.search(said)
            line = int(at[1]) if at else max(len(self.lines), 1)
            said = said[:at.start()] if at else said.replace("(at end of document)", "at the end of the file")
            self.error(line, f"not valid TOML: {said}")
            return []
        heads = [i + 1 for i, t in enumerate(self.lines) if _HEAD.match(t)]
        end = len(self.lines)
        whole = (1, end)
        stray = [k for k in doc if k not in ("defaults", "case")]
        if stray:
            key = stray[0]
            where = " goes under [defaults] or a [[case]]" if key in CASE_KEYS else " is not a key of a test file"
            self.error(self.line_of(whole, (key,)), f"{key}{where}: a test file holds a [defaults] table and "
                                                     "[[case]] tables")
            return []
        raw = doc.get("case", [])
        if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
            self.error(1, "`case` is an array of tables: write each case under a [[case]] line")
            return []
        if not raw:
            self.error(1, "no [[case]] in this file")
            return []
        start = next((i + 1 for i, t in enumerate(self.lines) if _DEFAULTS.match(t)), 1)
        defaults = self.defaults(doc.get("defaults", {}), (start, heads[0] - 1 if heads and heads[0] > start else end))
        if defaults is None:
            return []
        out, names = [], {}
        for i, case in enumerate(raw):
            span = (heads[i], heads[i + 1] - 1 if i + 1 < len(heads) else end) if len(heads) == len(raw) else whole
            name = case.get("name")
            if isinstance(name, str) and name.strip() in names:
                self.error(span[0], f"a second case named {name.strip()!r} (the first is at line "
                                    f"{names[name.strip()]})")
                continue
            if isinstance(name, str):
                names[name.strip()] = span[0]
            got = self.case(case, defaults, span)
            if got is not None:
                out.append(got)
        return out

    # --- the fields ----------------------------------------------------------------------

    def defaults(self, raw, span) -> dict | None:
        """The [defaults] table's fields, converted: what a case does not say itself."""
        errors = len(self.errors)
        try:
            _keys(_table(raw, "[defaults]", "defaults"), REQUEST_KEYS, "[defaults]")
        except _Bad as e:
            self.error(self.line_of(span, e.needles), e.message)
            return None
        out = {key: self.field(key, value, span) for key, value in raw.items()}
        return out if len(self.errors) == errors else None

    def field(self, key: str, value, span):
        """One request field converted (history checked against the time later); None and
        an error written if it is wrong."""
        try:
            return getattr(self, f"_{key}")(value)
        except _Bad as e:
            self.error(self.line_of(span, e.needles or (key,)), e.message)
        except _Many as many:
            for e in many.bad:
                self.error(self.line_of(span, e.needles or (key,)), e.message)
        return None

    def _time(self, v):
        return time_of(v, "time")

    def _spaces(self, v):
        return tuple(_known("space", s, self.catalog.spaces) for s in _strings(v, "spaces", "spaces"))

    def _attributes(self, v, root: str, schema) -> tuple[str | None, dict]:
        bad, out, contact = [], {}, None
        for key, value in _table(v, root, root).items():
            if root == "contact" and key == CONTACT_ID:
                try:
                    contact = _contact_id(value, f"contact.{CONTACT_ID}", CONTACT_ID)
                except _Bad as e:
                    bad.append(e)
                continue
            try:
                out.update(check_attributes(schema, {key: value}, root, self.catalog.domains))
            except InputError as e:
                bad += [_Bad(p, key) for p in e.problems]
        if bad:
            raise _Many(bad)
        return contact, out

    def _contact(self, v):
        return self._attributes(v, "contact", self.catalog.contact)

    def _context(self, v):
        return self._attributes(v, "context", self.catalog.context)[1]

    def _max_offers(self, v):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _Bad(f"max_offers is a whole number of at least 1, not {_show(v)}", "max_offers")
        return v

    def _categories(self, v):
        return tuple(_known("category", c, self.catalog.categories) for c in _strings(v, "categories", "categories"))

    def _themes(self, v):
        return tuple(_known("theme", t, self.themes) for t in _strings(v, "themes", "themes"))

    def _history(self, v):
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise _Bad("history is a list of tables, such as [{ offer = \"x\", space = \"y\", at = ... }]", "history")
        bad, out = [], []
        for entry in v:
            try:
                out.append(self.past(entry))
            except _Bad as e:
                bad.append(_Bad(e.message, *e.needles, entry.get("offer"), "history"))
        if bad:
            raise _Many(bad)
        return tuple(out)

    def past(self, e: dict) -> Past:
        keys = ("offer", "space", "at", "status", "status_at", "contact", "count")
        _keys(e, keys, "a history entry")
        for key in ("offer", "space", "at"):
            if key not in e:
                raise _Bad(f"a history entry needs {key} (it has {', '.join(e) or 'nothing'})", *e.values())
        offer = self.offer_in(e["offer"], _known("space", e["space"], self.catalog.spaces))
        status = e.get("status", "proposed")
        _known("status", status, STATUSES)
        at = time_of(e["at"], "at")
        status_at = time_of(e["status_at"], "status_at") if "status_at" in e else None
        if status_at is not None and status == "proposed":
            raise _Bad("status_at is when a presented, accepted or rejected status was reported: give the status",
                       "status_at")
        if status_at is not None and status_at < at:
            raise _Bad(f"status_at {status_at.isoformat()} is before the proposition's at {at.isoformat()}",
                       "status_at")
        contact = None if e.get("contact") is None else _contact_id(e["contact"], "a history entry's contact", "contact")
        count = e.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
            raise _Bad(f"count is a whole number from 1 to {MAX_COUNT}, not {_show(count)}", "count")
        return Past(offer, e["space"], at, status, status_at, contact, count)

    def offer_in(self, offer, space: str) -> str:
        """An offer the space may propose (one of its offers, or its fallback)."""
        _known("offer", offer, self.catalog.offers_by_name)
        if space not in self.catalog.offers_by_name[offer].spaces and self.catalog.spaces[space].fallback != offer:
            raise _Bad(f"offer {offer} is not in space {space}", offer)
        return offer

    # --- a case ----------------------------------------------------------------------------

    def case(self, raw: dict, defaults: dict, span) -> Case | None:
        errors = len(self.errors)
        try:
            _keys(raw, CASE_KEYS, "a [[case]]")
            name = raw.get("name")
            if not isinstance(name, str) or not name.strip():
                raise _Bad("a case needs a name: name = \"what it shows\"", "name")
        except _Bad as e:
            self.error(self.line_of(span, e.needles), e.message)
            return None
        got = {key: self.field(key, value, span) for key, value in raw.items() if key in REQUEST_KEYS}
        if len(self.errors) > errors:
            return None
        fields = {**defaults, **got}
        contact_id, attributes = None, {}
        for part in (defaults.get("contact"), got.get("contact")):  # the case's attributes win
            if part is not None:
                contact_id = part[0] or contact_id
                attributes = {**attributes, **part[1]}
        context = {**defaults.get("context", {}), **got.get("context", {})}
        expect = self.expectations(raw, span)
        if expect is None:
            return None
        if not any(expect):  # it would pass whatever the decision
            self.error(self.line_of(span, ("name",)), f"case {name.strip()!r} expects nothing: give expect, "
                                                      "expect_content or expect_explain")
            return None
        spaces = fields.get("spaces") or tuple(dict.fromkeys(s for kind in expect for s in kind))
        try:
            when = fields.get("time")
            if when is None:
                raise _Bad("a case needs a time: time = 2026-11-23T10:00:00+01:00 (here or in [defaults])", "name")
            if not spaces:
                raise _Bad("a case needs its spaces: spaces = [\"...\"], or expectations that name them", "name")
            for kind, key in zip(expect, ("expect", "expect_content", "expect_explain")):
                for space in kind:
                    if space not in spaces:
                        raise _Bad(f"{key}.{space}: space {space} is not among the case's spaces "
                                   f"({', '.join(spaces)})", space)
        except _Bad as e:
            self.error(self.line_of(span, e.needles), e.message)
            return None
        history = fields.get("history", ())
        for past in history:
            problem = self.past_problem(past, when, contact_id)
            if problem:
                self.error(self.line_of(span, (past.offer,)), problem)
        if len(self.errors) > errors:
            return None
        return Case(self.name, span[0], name.strip(), when, spaces, contact_id, attributes, context, history,
                    fields.get("max_offers"), fields.get("categories", ()), fields.get("themes", ()), *expect)

    @staticmethod
    def past_problem(past: Past, when: datetime.datetime, contact_id: str | None) -> str | None:
        last = past.status_at or past.at
        if last > when:
            return f"history of {past.offer} at {last.isoformat()} is after the case's time {when.isoformat()}"
        if past.contact is None and contact_id is None:
            return (f"history of {past.offer} belongs to the case's contact, which has no id: "
                    f"give contact = {{ {CONTACT_ID} = \"...\" }}, or the entry a contact")
        return None

    def expectations(self, raw: dict, span):
        """(expect, expect_content, expect_explain), each by space; None if one is wrong."""
        errors = len(self.errors)
        out = []
        for key, one in (("expect", self.offers), ("expect_content", self.content), ("expect_explain", self.reason)):
            by_space = {}
            try:
                table = _table(raw.get(key, {}), key, key)
            except _Bad as e:
                self.error(self.line_of(span, e.needles), e.message)
                continue
            for space, value in table.items():
                try:
                    _known("space", space, self.catalog.spaces)
                    by_space[space] = one(space, value)
                except _Bad as e:
                    self.error(self.line_of(span, (*e.needles, space, key)), f"{key}.{space}: {e.message}")
            out.append(by_space)
        return tuple(out) if len(self.errors) == errors else None

    def offers(self, space: str, v) -> tuple[str, ...]:
        offers = _strings(v, "the offers expected", space)
        for offer in offers:
            self.offer_in(offer, space)
        twice = [o for o in offers if offers.count(o) > 1]
        if twice:
            raise _Bad(f"offer {twice[0]} is expected twice; an offer is proposed once in a decision", twice[0])
        return tuple(offers)

    def content(self, space: str, v) -> dict[str, dict[str, str]]:
        out = {}
        for offer, fields in _table(v, "the content expected", space).items():
            self.offer_in(offer, space)
            written = [f for f, _ in self.catalog.offers_by_name[offer].content.get(space, ())]
            for name, text in _table(fields, f"{offer}'s content", offer).items():
                if name not in written:
                    hint = did_you_mean(name, written)
                    has = f"; {hint}" if hint else f"; it has {', '.join(written)}" if written else "; it has none"
                    raise _Bad(f"offer {offer} has no content field {name!r} in space {space}{has}", name)
                if not isinstance(text, str):
                    raise _Bad(f"{offer}.{name}: content is text, not {_show(text)}", name)
            out[offer] = dict(fields)
        return out

    def reason(self, space: str, v) -> dict[str, Reason]:
        out = {}
        for offer, said in _table(v, "the explain expected", space).items():
            self.offer_in(offer, space)
            if isinstance(said, str):
                said = {"kind": said}
            _keys(_table(said, f"{offer}'s explain", offer), ("kind", "rule", "clause"), f"{offer}'s explain")
            if not said:
                raise _Bad(f"{offer}'s explain says nothing: give a kind, a rule or a clause", offer)
            for key, text in said.items():
                if not isinstance(text, str) or not text.strip():
                    raise _Bad(f"{offer}'s explain {key} is text, not {_show(text)}", offer)
            kind = said.get("kind")
            if kind is not None and kind not in KINDS:
                hint = did_you_mean(kind, KINDS)
                raise _Bad(f"unknown explain kind {kind!r}" + (f"; {hint}" if hint else
                                                             f"; kinds: won, {', '.join(OUTCOMES)}"), kind)
            out[offer] = Reason(KINDS.get(kind), said.get("rule"), said.get("clause"))
        return out


class _Many(Exception):
    def __init__(self, bad: list[_Bad]):
        self.bad = bad
