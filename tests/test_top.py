"""Large spaces evaluated best-first (`CompiledSpace.top`): offers whose weight is bounded
come by their bound, highest first, and the rest of the space is skipped once enough
eligible offers weigh more than anything left could. Whatever it skips, the best offers,
and so the decisions, are those of evaluating the whole space."""
import datetime
import random

import pytest

from offerd import lang
from offerd.compiler import SpaceCache
from offerd.compiler.analysis import interval
from offerd.engine import Engine, Request
from offerd.history import EMPTY, MemoryHistory, Proposition
from offerd.lang.values import check_attributes

T0 = datetime.datetime(2026, 9, 21, 12, tzinfo=datetime.timezone.utc)
COUNTRIES = ("FR", "DE", "SE", "US", "ES")
HEAD = """\
schema contact { age: int  country: string  cart: float  vip: bool }
schema context { page: string }
let adult = contact.age >= 18
space s { limit 3 }
"""


def catalog_text(n: int, seed: int) -> str:
    """n offers in 6 categories, weights of every kind: constants (many ties), conditional,
    attribute arithmetic (no bound), history and propensity."""
    rnd = random.Random(seed)
    lines = [HEAD] + [f"category k{i} {{ }}" for i in range(6)]
    for i in range(n):
        terms = rnd.sample([f'contact.country in ["{rnd.choice(COUNTRIES)}", "{rnd.choice(COUNTRIES)}"]',
                            f"contact.age >= {rnd.randint(16, 60)}", "adult", "not contact.vip",
                            f"contact.cart ?? 0 > {rnd.randint(0, 200)}", f"proposed(o{i}, 7d) < 2",
                            'context.page != "cart"'], rnd.randint(0, 2))
        weight = rnd.choice([str(rnd.randint(1, 9)), f"if contact.vip then {rnd.randint(5, 12)} else 1",
                             f"{rnd.randint(1, 5)} + contact.cart / 40", f"{rnd.randint(3, 9)} - proposed(o{i}, 7d)",
                             f"{rnd.randint(2, 9)} * propensity", "min(contact.age, 9) / 2"])
        items = ["spaces s", f"category k{rnd.randrange(6)}", f"weight {weight}"]
        if terms:
            items.append("eligible " + " and ".join(terms))
        lines.append(f"offer o{i} {{ {'  '.join(items)} }}")
    return "\n".join(lines) + "\n"


def people(n: int, seed: int) -> list[tuple[dict, dict]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        contact = {"age": rnd.randint(12, 70), "country": rnd.choice(COUNTRIES),
                   "cart": round(rnd.uniform(0, 400), 2), "vip": rnd.random() < 0.3}
        if rnd.random() < 0.2:
            del contact[rnd.choice(list(contact))]  # missing attributes: null weights and rules
        out.append((contact, {"page": rnd.choice(["home", "cart", "product"])}))
    return out


def history(n_offers: int, seed: int) -> MemoryHistory:
    rnd = random.Random(seed)
    props = []
    for _ in range(300):
        at = T0.timestamp() - rnd.uniform(0, 9 * 86400)
        events = {"presented": at + 1} if rnd.random() < 0.6 else {}
        if events and rnd.random() < 0.3:
            events["accepted"] = at + 2
        props.append(Proposition("c1", f"o{rnd.randrange(n_offers)}", "s", (), at, events))
    return MemoryHistory(props)


def ranked(eligible):
    return sorted(eligible, key=lambda pw: (-pw[1], pw[0]))  # weight, then declaration order


@pytest.mark.parametrize("n", [40, 400])
def test_the_best_offers_of_top_are_those_of_the_whole_space(n):
    catalog = lang.check({"c.offer": catalog_text(n, seed=n)})
    space = SpaceCache().get(catalog, "s")
    assert space.ranks_by_bound and "top" not in space._lazy
    space.warm()  # what a server does before switching to the catalog
    assert "top" in space._lazy and "render" in space._lazy
    moment = space.moment(T0)
    views = [EMPTY, history(n, n).view("c1")]
    stopped = 0
    for contact, context in people(150, seed=n):
        c = check_attributes(catalog.contact, contact, "contact")
        x = check_attributes(catalog.context, context, "context")
        for view in views:
            full = space.evaluate(c, x, moment, view)
            for need in (1, 3, 8):
                got, complete = space.top(need, c, x, moment, view)
                assert ranked(got)[:need] == ranked(full)[:need]
                assert set(got) <= set(full)
                if complete:
                    assert sorted(got) == sorted(full)
                stopped += not complete
    assert stopped > 0  # the skipping did happen


def test_decisions_are_the_same_as_evaluating_every_offer():
    """explain evaluates the whole space: its winners must be the fast path's, also when a
    category filter turns down the best offers and the engine must look further."""
    catalog = lang.check({"c.offer": catalog_text(300, seed=7)})
    engine = Engine(None, catalog)
    assert engine.space("s").ranks_by_bound
    for i, (contact, context) in enumerate(people(120, seed=3)):
        filters = () if i % 3 else (f"k{i % 6}",)
        request = dict(spaces=("s",), attributes=contact, context=context, time=T0, dry_run=True,
                       categories=filters)
        fast = engine.decide(Request(**request))
        full = engine.decide(Request(**request, explain=True))
        assert [(p.offer, p.weight) for p in fast.spaces[0].proposals] == \
            [(p.offer, p.weight) for p in full.spaces[0].proposals], (contact, filters)


def test_weight_bounds_come_from_the_checked_expression():
    catalog = lang.check({"c.offer": HEAD + """
let bonus = if contact.vip then 4 else -2
offer a { spaces s  weight 3 + bonus }
offer b { spaces s  weight 10 * propensity - proposed(a, 1d) }
offer c { spaces s  weight contact.cart ?? 5 }
offer d { spaces s  weight max(2, min(contact.age, 7)) }
offer e { spaces s  weight 1152921504606847076 }
"""})
    bounds = {o.name: interval(o.weight.expr, catalog.lets) for o in catalog.offers}
    assert bounds["a"][0] <= 1 and 7 <= bounds["a"][1] == pytest.approx(7)
    assert 10 <= bounds["b"][1] == pytest.approx(10)  # propensity is at most 1 (see below)
    assert bounds["c"][1] == float("inf")
    assert 7 <= bounds["d"][1] == pytest.approx(7)
    assert bounds["e"][1] >= 2**60 + 100  # not rounded down to the float 2**60


def test_propensity_is_a_rate_even_when_acceptances_outnumber_presentations():
    """Presented 40 days ago, accepted yesterday: inside the 30-day window there are more
    acceptances than presentations; propensity stays at most 1, so the bound holds."""
    lines = [HEAD] + [f"offer c{i} {{ spaces s  weight 9 }}" for i in range(8)]
    lines += [f"offer p{i} {{ spaces s  weight 10 * propensity }}" for i in range(32)]
    catalog = lang.check({"c.offer": "\n".join(lines) + "\n"})
    space = SpaceCache().get(catalog, "s")
    old, late = T0.timestamp() - 40 * 86400, T0.timestamp() - 86400
    view = MemoryHistory([Proposition("c1", "p5", "s", (), old, {"presented": old, "accepted": late})
                          for _ in range(2)]).view("c1")
    assert view.propensity("p5", "s", T0.timestamp()) == 1.0
    moment = space.moment(T0)
    got, _ = space.top(3, {}, {}, moment, view)
    assert ranked(got)[:3] == ranked(space.evaluate({}, {}, moment, view))[:3]
    assert ranked(got)[0] == (8 + 5, 10.0)  # p5 weighs 10: more than the c offers' 9


class Shifting:
    """A history view whose propensity changes when told to: as if another process
    committed between two evaluations of the same decision."""

    def __init__(self):
        self.boost = None

    def count(self, key, status, since, until):
        return 0

    def total(self, key, status, since, until):
        return 0

    def propensity(self, offer, space, until):
        return 1.0 if offer == self.boost else 0.5


def test_looking_further_never_repeats_or_drops_an_offer():
    from offerd.engine.arbitrate import top_ranked

    lines = [HEAD] + [f"offer c{i} {{ spaces s  weight 40 }}" for i in range(10)]
    lines += [f"offer p{i} {{ spaces s  weight 30 + 15 * propensity }}" for i in range(30)]
    lines += [f"offer q{i} {{ spaces s  weight {i % 5} }}" for i in range(10)]
    catalog = lang.check({"c.offer": "\n".join(lines) + "\n"})
    space = SpaceCache().get(catalog, "s")
    view = Shifting()
    ranking = top_ranked(space, 4, ({}, {}, space.moment(T0), view))
    first = [next(ranking) for _ in range(4)]
    assert [pos for pos, _ in first] == [0, 1, 2, 3]  # c0-c3, weight 40
    view.boost = "p7"  # p7 now weighs 45: the best of the space, read again
    rest = list(ranking)
    positions = [pos for pos, _ in first + rest]
    assert len(positions) == len(set(positions)) == 50  # every offer once, none lost
    assert rest[0] == (10 + 7, 45.0)
