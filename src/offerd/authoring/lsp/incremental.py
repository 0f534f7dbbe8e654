"""The checker, reusing each offer's result from the previous check while nothing the offer
reads has changed: the same offer node (its file's parse was reused) at the same place, and
the same declarations around it. Checking offers is most of a check; a keystroke changes one
file, so the other files' offers are replayed (their result, diagnostics and lets used)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...lang import nodes as n
from ...lang.checker import Checker
from ...lang.diagnostics import Diagnostic, Reporter
from ...lang.parser import MAX_FILE_BYTES, parse


@dataclass
class OfferCache:
    """What one folder's last check learnt about its offers."""

    env: tuple | None = None
    entries: dict[int, tuple] = field(default_factory=dict)  # id(offer) → (offer, index, result, diagnostics, lets)


class CachingChecker(Checker):
    """Checker whose `_offer` is replayed from `cache` when the offer and what it reads are unchanged.

    What an offer's check reads, besides the offer itself: the schemas, lets and timezone
    (compared by value, spans aside, as the syntax tree compares), each space's name and
    `fields`, the names of the categories and groups (their rules and caps are checked on
    their own: editing one replays every offer), the offers' names in order and each offer's
    spaces (history functions, fallbacks, did-you-mean hints), and today (the validity warning)."""

    def __init__(self, modules, sources, today, cache: OfferCache):
        super().__init__(modules, sources, today)
        self.cache = cache
        self.fresh: dict[int, tuple] = {}
        self.env_checked = False
        self.reused = 0

    def _environment(self) -> tuple:
        others = tuple(_read_by_offers(d) for m in self.modules for d in m.decls if not isinstance(d, n.Offer))
        return self.today, others, tuple(self.offer_spaces.items())  # every offer's name, in order, and spaces

    def _offer(self, o: n.Offer, index: int):
        if not self.env_checked:
            self.env_checked = True
            env = self._environment()
            if env != self.cache.env:
                self.cache.entries.clear()
                self.cache.env = env
        hit = self.cache.entries.get(id(o))
        if hit is not None and hit[0] is o and hit[1] == index:
            self.r.diagnostics.extend(hit[3])
            self.exprs.used_lets.update(hit[4])
            self.fresh[id(o)] = hit
            self.reused += 1
            return hit[2]
        start, used_before = len(self.r.diagnostics), self.exprs.used_lets
        self.exprs.used_lets = set()
        try:
            result = super()._offer(o, index)
        finally:
            used, self.exprs.used_lets = self.exprs.used_lets, used_before
            used_before.update(used)
        self.fresh[id(o)] = (o, index, result, self.r.diagnostics[start:], frozenset(used))
        return result

    def finish(self) -> None:
        """Keep this check's offers for the next (those of a check that stopped early are lost)."""
        if self.env_checked:
            self.cache.entries = self.fresh


def _read_by_offers(d):
    """What an offer's check reads of a declaration that is not an offer (Checker._offer,
    _content, _required_fields, and expressions naming categories and groups)."""
    if isinstance(d, (n.Category, n.Group)):
        return type(d).__name__, d.name
    if isinstance(d, n.Space):
        return "Space", d.name, next((i for i in d.items if isinstance(i, n.Fields)), None)
    return d


# A declaration starts a line with its keyword: at such lines a file is cut into chunks, each
# parsed alone (after as many newlines as precede it, so spans stay the file's) and kept by its
# text and line. Where every chunk parses, the declarations are those of the whole file (the
# grammar is a sequence of declarations, none spanning such a line); where one does not, the
# whole file is parsed again so that its errors read exactly as `offerd check` reports them.
DECL_START = re.compile(r"^(?:timezone|schema|let|space|category|group|offer)\b", re.M)


def chunks(text: str) -> list[tuple[int, str]]:
    """(lines before it, its text) of each chunk."""
    starts = [m.start() for m in DECL_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    out, line = [], 0
    for a, b in zip(starts, starts[1:] + [len(text)]):
        out.append((line, text[a:b]))
        line += text.count("\n", a, b)
    return out


def parse_file(text: str, name: str, previous: dict) -> tuple[n.Module, list[Diagnostic], dict]:
    """A file's module and parse diagnostics, reusing the chunks of `previous` (its last
    parse's) that did not change; and this parse's chunks for the next."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:  # its error comes from parse()
        report = Reporter()
        return parse(text, name, report), report.diagnostics, {}
    if not previous:  # the first parse: one pass over the whole file is faster, then its declarations
        report = Reporter()  # are shared out to the chunks they start in
        module = parse(text, name, report)
        return module, report.diagnostics, ({} if report.diagnostics else _share(chunks(text), module.decls) or {})
    decls, diagnostics, kept = [], [], {}
    for key in chunks(text):
        got = previous.get(key)
        if got is None:
            report = Reporter()
            module = parse("\n" * key[0] + key[1], name, report)
            if report.has_errors:
                report = Reporter()
                return parse(text, name, report), report.diagnostics, {}
            got = module.decls, report.diagnostics
        kept[key] = got
        decls.extend(got[0])
        diagnostics.extend(got[1])
    return n.Module(name, tuple(decls)), diagnostics, kept


KINDS = {"timezone": n.Timezone, "schema": n.Schema, "let": n.Let, "space": n.Space, "category": n.Category,
         "group": n.Group, "offer": n.Offer}
KEYWORD_THEN_NAME = re.compile(r"(\w+)[ \t]+")


def _share(keys: list[tuple[int, str]], decls) -> dict | None:
    """Each chunk's declarations (a clean parse has no diagnostics): those whose name is on its
    lines. None when a chunk's keyword does not start a declaration of the whole parse (`offer`
    ending a line, its name `group` starting the next): such a chunk does not parse alone, and
    kept, it would be joined to whatever its neighbour is edited into."""
    kept, i = {}, 0
    for k, key in enumerate(keys):
        last = keys[k + 1][0] if k + 1 < len(keys) else None
        mine = []
        while i < len(decls) and (last is None or decls[i].span.line <= last):
            mine.append(decls[i])
            i += 1
        keyword = DECL_START.match(key[1])
        if keyword is not None and not _starts(keyword.group(), key, mine):
            return None
        kept[key] = (tuple(mine), [])
    return kept


def _starts(keyword: str, key: tuple[int, str], decls: list) -> bool:
    """Whether the chunk's first declaration is the one its keyword starts: of its kind, its
    span at the keyword (timezone) or at the name right after it on the same line."""
    if not decls or type(decls[0]) is not KINDS[keyword]:
        return False
    span = decls[0].span
    if keyword == "timezone":
        return (span.line, span.col) == (key[0] + 1, 1)
    name = KEYWORD_THEN_NAME.match(key[1])
    return name is not None and (span.line, span.col) == (key[0] + 1, name.end() + 1)
