"""Seeded populations for a catalog's contact schema (`offerd gen-population`): one distinct
id per row (c0000001, c0000002, …, usable for holdouts and `bucket(contact.id, …)`); each
attribute drawn from its closed set or range when the schema gives one, else 3 times in 10
near a literal the rules compare it with (so the population meets the rules on both
sides), else a plausible value for its type and name (adult ages, non-negative amounts,
birthdays of adults, recent dates). The same seed gives the same rows."""
from __future__ import annotations

import datetime
import random
from typing import Iterator

from ..lang import nodes as n
from ..lang.catalog import Catalog, Domain
from ..lang.types import Type
from .population import ID_FIELD

# generated dates are relative to this day, not to today: the same seed gives the same file
ANCHOR = datetime.date(2026, 1, 1)
LEFT_OUT = 0.1  # about one attribute in ten is absent from a row
NEAR = 0.3  # how often a value is a rule's literal (a number: one below, at or above it)

# plausible strings, chosen by the attribute's name (its last word, singular)
WORDS = {
    "first_name": ("Anna", "Louis", "Sofia", "Lukas", "Emma", "Mateo", "Chloé", "Jonas", "Lea", "Hugo", "Maja",
                   "Noah", "Giulia", "Elias", "Inès", "Oskar"),
    "last_name": ("Martin", "Müller", "Rossi", "García", "Dubois", "Jansen", "Nowak", "Svensson", "Bernard", "Smith"),
    "country": ("FR", "DE", "IT", "ES", "GB", "NL", "BE", "SE", "PL", "PT", "US"),
    "city": ("Paris", "Lyon", "Berlin", "Munich", "Milan", "Madrid", "London", "Amsterdam", "Brussels", "Stockholm"),
    "language": ("fr", "de", "it", "es", "en", "nl", "sv", "pl"),
    "currency": ("EUR", "GBP", "SEK", "PLN", "USD"),
    "gender": ("f", "m", "x"),
    "segment": ("basic", "silver", "gold", "platinum"),
    "tier": ("basic", "silver", "gold", "platinum"),
    "channel": ("web", "app", "store", "phone", "email"),
    "device": ("mobile", "desktop", "tablet"),
    "page": ("home", "product", "cart", "checkout", "account"),
    "tag": ("new", "loyal", "student", "newsletter", "app_user", "churn_risk", "family", "business"),
    "interest": ("fashion", "sport", "travel", "books", "music", "garden", "tech", "food"),
}
ALIASES = {"name": "first_name", "firstname": "first_name", "given_name": "first_name", "surname": "last_name",
           "lastname": "last_name", "family_name": "last_name", "lang": "language", "locale": "language",
           "tags": "tag", "interests": "interest", "level": "tier", "countries": "country"}
MONEY = ("total", "amount", "price", "spend", "spent", "balance", "value", "revenue", "cart", "basket", "ltv", "income")
SHARE = ("rate", "ratio", "share", "probability", "propensity", "score")
COUNT = ("visit", "order", "purchase", "count", "click", "login", "session", "item", "day", "times", "num", "nb")


def generate(catalog: Catalog, count: int, seed: int) -> Iterator[dict]:
    """`count` JSON-ready rows for the catalog's contact schema, the same for the same seed."""
    rnd = random.Random(seed)
    seen = _literals(catalog)
    fields = sorted(catalog.contact.items())
    digits = max(7, len(str(count)))
    for i in range(count):
        row = {ID_FIELD: f"c{i + 1:0{digits}d}"}
        for name, t in fields:
            if rnd.random() < LEFT_OUT:
                continue
            row[name] = _value(rnd, name, t, seen.get(name, []), catalog.domains.get(("contact", name)), i)
        yield row


def _value(rnd: random.Random, name: str, t: Type, known: list, domain: Domain | None, i: int):
    if t.name in ("set", "list"):
        items = {_value(rnd, name, t.elem, known, domain, i) for _ in range(rnd.choice((0, 1, 1, 2, 2, 3)))}
        return sorted(items, key=str)
    if domain is not None:
        return _within(rnd, t, known, domain)
    near = [v for v in known if _fits(t, v)]
    if near and rnd.random() < NEAR:
        v = rnd.choice(near)
        if t.name in ("int", "float"):  # either side of the rule's threshold, within what is plausible
            v += rnd.choice((-1, 0, 1)) * (1 if t.name == "int" else round(rnd.random(), 2))
            low, high = _bounds(name, t)
            v = min(max(v, low), high)
            return round(v, 2) if t.name == "float" else int(v)
        return v.isoformat() if isinstance(v, datetime.date) else v
    return _plausible(rnd, name, t, i)


def _fits(t: Type, v) -> bool:
    if t.name == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t.name == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t.name == "date":
        return isinstance(v, datetime.date)
    return isinstance(v, {"bool": bool, "string": str}.get(t.name, object))


def _words(name: str) -> list[str]:
    return name.lower().replace("-", "_").split("_")


def _bounds(name: str, t: Type) -> tuple[float, float]:
    """The plausible range of a number attribute, by its name."""
    words = _words(name)
    if "age" in words:
        return 0, 110
    if any(w.startswith(SHARE) for w in words) and t.name == "float":
        return 0.0, 1.0
    if "year" in words:
        return 1900, ANCHOR.year
    return 0, 1e9  # amounts and counts are not negative


def _plausible(rnd: random.Random, name: str, t: Type, i: int):
    words = _words(name)
    if t.name == "bool":
        return rnd.random() < 0.5
    if t.name == "int":
        if "age" in words:
            return rnd.randint(18, 90)
        if "year" in words:
            return rnd.randint(ANCHOR.year - 30, ANCHOR.year)
        if any(w.startswith(COUNT) for w in words):
            return min(int(rnd.expovariate(1 / 6)), 200)
        return rnd.randint(0, 100)
    if t.name == "float":
        if any(w.startswith(SHARE) for w in words):
            return round(rnd.random(), 3)
        if any(w.startswith(MONEY) for w in words):
            return round(min(rnd.lognormvariate(4.2, 1.0), 5000.0), 2)
        return round(rnd.uniform(0, 500), 2)
    if t.name == "date":
        if any(w.startswith(("birth", "dob", "born")) for w in words):  # an adult's birthday
            return (ANCHOR - datetime.timedelta(days=rnd.randint(18 * 365 + 5, 90 * 365))).isoformat()
        if any(w.startswith(("expir", "end", "until", "renew", "due", "next")) for w in words):
            return (ANCHOR + datetime.timedelta(days=rnd.randrange(2 * 365))).isoformat()
        return (ANCHOR - datetime.timedelta(days=rnd.randrange(3 * 365))).isoformat()  # signed up, last seen...
    if t.name != "string":
        return None
    if words[-1] in ("id", "uid", "key", "ref", "number", "no"):  # identifiers: one per row
        return f"{'_'.join(words[:-1]) or 'x'}{i + 1:07d}"
    if "email" in words or "mail" in words:
        return f"user{i + 1}@example.com"
    if words[-1] in ("phone", "mobile", "msisdn"):
        return f"+33 6 {rnd.randrange(10**8):08d}"
    if words[-1] in ("zip", "postcode", "postal"):
        return f"{rnd.randrange(1000, 99999):05d}"
    lower = name.lower()
    key = lower if lower in WORDS else ALIASES.get(lower) or (
        words[-1] if words[-1] in WORDS else ALIASES.get(words[-1]))
    if key in WORDS:
        return rnd.choice(WORDS[key])
    return f"{name}_{rnd.randrange(1, 13)}"


def _within(rnd: random.Random, t: Type, known: list, d: Domain):
    """A value in the closed set (the rules' literals half the time, else any member) or
    in the range (near a rule's literal half the time, else uniform), JSON-ready."""
    if d.values is not None:
        members = [v for v in known if v in d.values]
        return rnd.choice(members if members and rnd.random() < 0.5 else d.listed)
    low, high = d.low, d.high
    if t.name == "date":
        near = [v for v in known if isinstance(v, datetime.date)]
        if near and rnd.random() < 0.5:
            v = rnd.choice(near)
        else:
            v = low + datetime.timedelta(days=rnd.randrange((high - low).days + 1))
        return min(max(v, low), high).isoformat()
    near = [v for v in known if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if near and rnd.random() < 0.5:
        v = rnd.choice(near) + rnd.choice((-1, 0, 1)) * (1 if t.name == "int" else rnd.random())
    else:
        v = rnd.randint(low, high) if t.name == "int" else rnd.uniform(low, high)
    v = int(v) if t.name == "int" else round(v, 2)
    return min(max(v, low), high)


def _literals(catalog: Catalog) -> dict[str, list]:
    """For each contact attribute, the literal values rules compare it with (`contact.x ?? 0
    > 5` compares x with 5, and 0 is not a value of x)."""
    out: dict[str, list] = {}
    stack = [c.expr for o in catalog.offers for c in o.eligible + o.limits]
    stack += [c.expr for o in catalog.offers for checks in o.eligible_in.values() for c in checks]
    stack += [c.expr for cat in catalog.categories.values() for c in cat.eligible]
    stack += [c.expr for space in catalog.spaces.values() for c in space.eligible]
    stack += [c.expr for g in catalog.groups.values() for c in g.eligible]
    stack += [c.expr for owner in [*catalog.categories.values(), *catalog.groups.values()]
              for checks in owner.eligible_in.values() for c in checks]
    stack += list(catalog.lets.values())
    while stack:
        e = stack.pop()
        if isinstance(e, n.Binary) and e.op != "??":
            for a, b in ((e.left, e.right), (e.right, e.left)):
                if isinstance(a, n.Binary) and a.op == "??":
                    a = a.left
                if isinstance(a, n.Attr) and a.root == "contact":
                    items = b.items if isinstance(b, n.ListLiteral) else (b,)
                    vals = [x.value for x in items if isinstance(x, n.Literal)]
                    known = out.setdefault(a.name, [])
                    known.extend(v for v in vals if v not in known)
        stack.extend(n.children(e))
    return out
