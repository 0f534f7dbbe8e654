"""The decision engine: a request in, the best offers per space out, recorded atomically.

One decision: the profile merged under the passed attributes, the contact's history read
once, per space the compiled rules (eligibility, validity, caps and suppressions against
the committed history, weights), then arbitration (`arbitrate`: by weight, the caps with
the offers already chosen in this call, no offer twice across spaces, the request's
filters and maximum), the fallback when nothing wins; content rendered; everything
recorded in one group-committed write, where the store re-checks the caps against
concurrent decisions."""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field

from ..compiler import SpaceCache, default_cache
from ..compiler.space import CompiledSpace, Moment
from ..lang.catalog import CONTACT_ID, Catalog, OfferDef
from ..lang.values import InputError, check_attributes
from ..store import Contact, NotFound, Store, StoredHistory, StoreError
from ..domain import REPORTED, Replay
from .arbitrate import arbitrate, ranked, top_ranked
from .model import (BadRequest, Decision, Explained, NoCatalog, Proposal, Request, SpaceResult,
                    UnknownSpace)
from ..cluster.routing import ID_LENGTH, proposition_id, raw_id
from . import retries
from .shared import reserve
from .plan import Plan

log = logging.getLogger("offerd.engine")

UTC = datetime.timezone.utc


@dataclass
class _Pick:
    """A winner while the decision is assembled."""

    space: str
    offer: OfferDef
    weight: float | None
    content: dict[str, str]
    fallback: bool = False
    id: str | None = None


@dataclass
class _Work:
    """One request in flight: its inputs, resolved once, and what was chosen so far."""

    request: Request
    plan: Plan
    when: datetime.datetime
    moment: Moment
    contact: Contact | None
    attrs: dict
    context: dict
    history: object
    picks: list[_Pick] = field(default_factory=list)
    chosen: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, ref) → picks counting toward it
    notes: dict[tuple[str, str], Explained] = field(default_factory=dict)  # (space, offer) → why it lost


class Engine:
    """Decisions against the live catalog. `store` None: dry runs only, no history."""

    def __init__(self, store: Store | None, catalog: Catalog | None = None, cache: SpaceCache | None = None):
        self.store = store
        self.cache = cache or default_cache
        self.retry_window = retries.DEFAULT_WINDOW  # seconds a request's first answer is kept for retries; 0: none
        self.routed = False  # in a cluster: proposition ids route like their contact's id (cluster.routing)
        self.totals = None  # in a cluster: total caps counted across shards (cluster.totals.Totals)
        self._plan: Plan | None = None
        if catalog is not None:
            self.load(catalog)

    # --- the live catalog --------------------------------------------------------------

    def load(self, catalog: Catalog) -> None:
        """Make `catalog` the one that decides; its spaces compile on first use. Requests
        in flight finish with the catalog they started with. The store keeps fine counters
        for the windowed totals it reads, from before it decides (a write, the first time)."""
        plan = Plan(catalog, shared=self.totals is not None)
        if self.totals is not None:
            self.totals.keep = plan.shared_heads
        if self.store is not None and plan.totals:
            try:
                self.store.track(plan.totals)
            except StoreError as e:  # too many events for one transaction, a full disk: still exact
                log.warning("the totals of this catalog are counted in the event index, slower, as the "
                            "store could not keep fine counters for them: %s", e)
        self._plan = plan

    @property
    def catalog(self) -> Catalog:
        if self._plan is None:
            raise NoCatalog("no catalog is live: deploy one first")
        return self._plan.catalog

    @property
    def retention(self) -> float | None:
        """Seconds of history the live catalog's rules read; None: all of it (or nothing live)."""
        if self._plan is None:
            return None
        return self._plan.retention

    def space(self, name: str, plan: Plan | None = None) -> CompiledSpace:
        plan = plan or self._plan
        if plan is None:
            raise NoCatalog("no catalog is live: deploy one first")
        got = plan.compiled.get(name)
        if got is None:
            if name not in plan.catalog.spaces:
                raise UnknownSpace(f"no space {name!r} in the live catalog; spaces: {', '.join(sorted(plan.catalog.spaces))}")
            got = plan.compiled[name] = self.cache.get(plan.catalog, name)
        return got

    # --- deciding ----------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        if self.totals is not None:
            raise RuntimeError("a cluster's shard counts its total caps in Redis: it decides with decide_async")
        once = None
        if request.request_id or request.batch:  # a retry's first answer, if it has one (most calls carry no id)
            once = self._once(request)
            first = once and self._first(once)
            if first:
                return first
        work = self._prepare(request)
        if self._records(work):
            ids = self.store.record_decision(work.contact, work.moment.ts, self._props(work), work.history,
                                             *self._retry(work, once))
            if isinstance(ids, Replay):  # a copy of this request was written meanwhile
                return retries.decode(ids.value)
            self._commit(work, ids)
        elif once is not None and request.batch:  # nothing recorded: the row's answer alone, so it is not decided again
            there = self.store.put_note(*self._retry(work, once)[0]([]), keep=self._kept)
            if there is not None:  # a copy of the row recorded meanwhile: its answer
                return retries.decode(there)
        return self._answer(work)

    async def decide_async(self, request: Request, note=None) -> Decision:
        """`decide` for asyncio callers: the write awaits the group commit. `note(picks,
        ids)` → (key, value), if given, is stored in the same transaction as the decision:
        [(space, offer, content)] of the picks and their proposition ids (None: refused)."""
        once = None
        if (request.request_id or request.batch) and note is None:  # `offerd batch` resumes by its own notes
            once = self._once(request)
            first = once and self._first(once)
            if first:
                return first
        work = self._prepare(request)
        if not self._records(work):
            if once is not None and request.batch:  # nothing recorded: the row's answer alone, not decided again
                return await self._empty_row(work, once)
            return self._answer(work)
        shared = None
        if self.totals is not None:
            work, shared = await reserve(self, request, work)
        try:
            if not work.picks:  # every pick refused by the shared counts
                if once is not None and request.batch:
                    return await self._empty_row(work, once)
                return self._answer(work)
            stored, check = self._retry(work, once)
            if note is not None:  # a batch: what it proposed goes into the note
                picks = [(p.space, p.offer.name, p.content) for p in work.picks]
                stored = lambda ids: note(picks, ids)  # noqa: E731
            try:
                ids = await self.store.record_decision_async(work.contact, work.moment.ts, self._props(work),
                                                              work.history, stored, check,
                                                              None if shared is None else shared.ids)
            except Exception:
                if shared is not None and shared.held:  # nothing written: nothing stays counted
                    await self.totals.release(shared.counted())
                raise
            if shared is not None and shared.held:  # what the write refused, or all of a replay, given back
                await self.totals.release(shared.counted(
                    None if isinstance(ids, Replay) else [i for i, x in enumerate(ids) if x is None]))
        finally:
            if shared is not None and shared.held:
                self.totals.done()
        if isinstance(ids, Replay):  # a copy of this request was written meanwhile
            return retries.decode(ids.value)
        self._commit(work, ids)
        return self._answer(work)

    async def _empty_row(self, work: _Work, once) -> Decision:
        """A batch row that proposed nothing: its empty answer kept, unless a copy of the row
        recorded meanwhile (then that answer is the row's)."""
        there = await self.store.put_note_async(*self._retry(work, once)[0]([]), keep=self._kept)
        return self._answer(work) if there is None else retries.decode(there)

    # --- safe retries (retries.py) ---------------------------------------------------

    def _once(self, request: Request) -> tuple[float, tuple[bytes, ...]] | None:
        """When the request came (wall clock) and the keys a recorded decision with a request
        id is looked for under, for its retries (retries.keys; the first is where it is
        written, with that time)."""
        if request.dry_run or request.contact_id is None or self.store is None:
            return None
        wall = time.time()
        if request.batch:  # a batch row: one key, no window
            return wall, (request.batch,)
        if not request.request_id or self.retry_window <= 0:
            return None
        return wall, retries.keys(self._contact(request), request, wall, self.retry_window)

    def _fresh(self, value: bytes) -> bool:
        """A note written within the window that reads as an answer (a corrupt one is
        written over by the decision taken instead)."""
        at = retries.written_at(value)
        if at is None:
            log.error("a stored answer for retries is %d bytes, too short: deciding again", len(value))
            return False
        if at < time.time() - self.retry_window:
            return False
        return self._kept(value)

    def _kept(self, value: bytes) -> bool:
        """An answer that reads as one (a corrupt one is written over); a batch row's is
        kept whatever its age."""
        try:
            retries.decode(value)
        except ValueError as e:
            log.error("%s: deciding again", e)
            return False
        return True

    def _accepts(self, keys: tuple[bytes, ...]):
        """How a stored answer under `keys` is judged: a batch row's whatever its age, a
        retry's within the window."""
        return self._kept if keys[0].startswith(retries.BATCH) else self._fresh

    def _first(self, once) -> Decision | None:
        fresh = self._accepts(once[1])
        for key in once[1]:
            value = self.store.note(key)
            if value is not None and fresh(value):
                return retries.decode(value)
        return None

    def _retry(self, work: _Work, once):
        """(note, once) for the store: the first answer written with the decision (stamped
        with the time the request came, which chose its key), and the write's own check for
        a copy that got there first."""
        if once is None:
            return None, None
        (wall, keys), spaces, hash_ = once, tuple(dict.fromkeys(work.request.spaces)), work.plan.catalog.hash
        note = lambda ids: (keys[0], retries.encode(wall, work.when, hash_, spaces, work.picks,  # noqa: E731
                                                    [self._id(work, pid) for pid in ids]))
        return note, (keys, self._accepts(keys))

    def _records(self, work: _Work) -> bool:
        return bool(work.picks) and not work.request.dry_run and self.store is not None

    def _prepare(self, request: Request, refused: frozenset = frozenset()) -> _Work:
        plan = self._plan
        if plan is None:
            raise NoCatalog("no catalog is live: deploy one first")
        catalog = plan.catalog
        if not request.spaces:
            raise BadRequest("a decision names at least one space")
        for name in request.spaces:
            if name not in catalog.spaces:
                raise UnknownSpace(f"no space {name!r} in the live catalog; spaces: {', '.join(sorted(catalog.spaces))}")
        if request.max_offers is not None and request.max_offers < 1:
            raise BadRequest(f"max_offers must be at least 1, not {request.max_offers}")
        for cat in request.categories:
            if cat not in catalog.categories:
                raise BadRequest(f"no category {cat!r} in the live catalog")
        when = request.time or datetime.datetime.now(UTC)
        if when.tzinfo is None:
            raise BadRequest("the decision time must carry a timezone (an offset or Z)")
        moment = Moment.at(when, catalog.timezone)
        contact = self._contact(request)
        try:
            passed = check_attributes(catalog.contact, request.attributes, "contact",
                                      catalog.domains) if request.attributes else {}
            context = check_attributes(catalog.context, request.context, "context",
                                       catalog.domains) if request.context else {}
        except InputError as e:
            raise BadRequest(str(e)) from None
        stored, history = self._read(plan, contact, moment)
        if stored:
            # the store hands back the same dict while the profile is unchanged: fitted once
            fitted = plan.fitted.get(id(stored))
            if fitted is None or fitted[0] is not stored:
                fitted = (stored, _fit(plan, stored))
                if len(plan.fitted) >= 4096:
                    plan.fitted.clear()
                plan.fitted[id(stored)] = fitted
            attrs = {**fitted[1], **passed} if passed else fitted[1]  # read only, from here on
        else:
            attrs = passed
        if plan.reads_contact_id and contact is not None:  # contact.id: a copy, the cached dicts stay as they are
            attrs = {**attrs, CONTACT_ID: contact.id}
        work = _Work(request, plan, when, moment, contact, attrs, context, history)
        seen: set[str] = set()
        for name in dict.fromkeys(request.spaces):  # a space named twice is decided once
            self._decide_space(work, name, seen, refused)
        return work

    def _contact(self, request: Request) -> Contact | None:
        if request.contact_id is None:
            if request.anonymous:
                raise BadRequest("an anonymous contact needs its visitor id")
            return None
        contact = Contact(request.contact_id, request.anonymous)
        try:
            contact.key()
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return contact

    def _read(self, plan: Plan, contact: Contact | None, moment: Moment):
        """The stored profile (identified contacts) and the history view, in one read."""
        if self.store is None:
            from ..history import EMPTY
            return None, EMPTY
        if contact is None:
            return None, StoredHistory(self.store, [])  # totals and propensity still read the counters
        since = moment.ts if not plan.reads_history else (
            None if plan.horizon is None else moment.ts - plan.horizon)
        return self.store.decision_inputs(contact, since, not contact.anonymous, plan.indexer)

    def _decide_space(self, work: _Work, name: str, seen: set[str], refused: frozenset = frozenset()) -> None:
        request = work.request
        compiled = self.space(name, work.plan)
        limit = compiled.space.limit if request.max_offers is None else min(compiled.space.limit, request.max_offers)
        args = (work.attrs, work.context, work.moment, work.history)
        explain = request.explain
        if explain or not compiled.ranks_by_bound:
            candidates = ranked(compiled.evaluate(*args), None if explain else 2 * limit + 2)
        else:
            candidates = top_ranked(compiled, 2 * limit + 2, args)
        keep = _keeper(request) if request.categories or request.themes else None
        if refused:  # offers a cluster's shared counts refused in this space: decided again without them
            first = keep
            keep = lambda o: (name, o.name) not in refused and (first is None or first(o))  # noqa: E731
        lost = [] if explain else None
        won = arbitrate(work.plan, compiled, candidates, limit, seen, work.chosen, work.history, work.moment.ts,
                        keep, lost, explain)
        for pos, weight in won:
            content = compiled.render(pos, work.attrs, work.context, work.moment, work.history)
            work.picks.append(_Pick(name, compiled.offers[pos], weight, content))
        if lost:
            for pos, weight, why, cap in lost:
                offer = compiled.offers[pos].name
                work.notes[(name, offer)] = Explained(offer, why, rule=None if cap is None else str(cap.rule),
                                                      weight=weight)
        if not won and compiled.fallback is not None and compiled.admits(*args):
            content = compiled.render_fallback(*args)
            work.picks.append(_Pick(name, compiled.fallback, None, content, fallback=True))

    def _props(self, work: _Work):
        plan = work.plan
        return [plan.proposition(p.offer, p.space, p.fallback) for p in work.picks]

    def _commit(self, work: _Work, ids) -> None:
        kept = []
        for pick, pid in zip(work.picks, ids):
            if pid is None:  # a concurrent decision took the cap first: answered without it
                work.notes[(pick.space, pick.offer.name)] = Explained(pick.offer.name, "cap at commit",
                                                                      weight=pick.weight)
                continue
            pick.id = self._id(work, pid)
            kept.append(pick)
        work.picks = kept

    def _id(self, work: _Work, pid: bytes | None) -> str | None:
        """The id a gateway sees: in a cluster, one a balancer routes to the contact's shard."""
        if pid is None or not self.routed or work.contact is None:
            return None if pid is None else pid.hex()
        return proposition_id(pid, work.contact.id)

    def _answer(self, work: _Work) -> Decision:
        results = []
        for name in dict.fromkeys(work.request.spaces):
            picks = [p for p in work.picks if p.space == name]
            proposals = tuple(Proposal(p.offer.name, rank, p.weight, p.content, p.id, p.fallback)
                              for rank, p in enumerate(picks, 1))
            explain = self._explain(work, name, proposals) if work.request.explain else None
            results.append(SpaceResult(name, proposals, explain))
        return Decision(work.when, work.plan.catalog.hash, tuple(results))

    def _explain(self, work: _Work, name: str, proposals: tuple[Proposal, ...]) -> tuple[Explained, ...]:
        compiled = self.space(name, work.plan)
        won = {p.offer: p for p in proposals}
        out = []
        args = (work.attrs, work.context, work.moment, work.history)
        for pos, outcome in enumerate(compiled.explain(*args)):
            offer = outcome.offer.name
            note = work.notes.get((name, offer))
            if offer in won:
                out.append(Explained(offer, "won", weight=won[offer].weight, rank=won[offer].rank))
            elif note is not None and note.kind == "cap at commit":
                out.append(note)  # explain re-reads totals, which by now include the decision that took the cap
            elif not outcome.eligible:
                out.append(_removed(compiled, pos, outcome.index, args, work.request.explain_all))
            else:
                out.append(note or Explained(offer, "arbitration", weight=outcome.weight))
        if compiled.fallback is not None and compiled.fallback.name in won:
            out.append(Explained(compiled.fallback.name, "won", rank=1))
        return tuple(out)

    # --- status reports ----------------------------------------------------------------

    def record(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        """presented / accepted / rejected for a proposition id (hex). Idempotent: True if
        it changed anything. Unknown ids raise NotFound; impossible moves ImpossibleMove."""
        pid, at = self._report_args(proposition, status, time)
        return self.store.report(pid, status, at)

    async def record_async(self, proposition: str, status: str, time: datetime.datetime | None = None) -> bool:
        pid, at = self._report_args(proposition, status, time)
        return await self.store.report_async(pid, status, at)

    def _report_args(self, proposition: str, status: str, time: datetime.datetime | None):
        if self.store is None:
            raise NoCatalog("this engine has no store: it cannot record")
        if status not in REPORTED:
            raise BadRequest(f"unknown status {status!r}: presented, accepted or rejected")
        pid = raw_id(proposition)
        if pid is None:
            raise NotFound(f"no proposition {proposition!r}: ids are 32 hex digits (then, in a cluster, "
                           f"{ID_LENGTH - 32} digits 0-7)")
        if time is not None and time.tzinfo is None:
            raise BadRequest("the report time must carry a timezone (an offset or Z)")
        return pid, None if time is None else time.timestamp()


def _keeper(request: Request):
    """The request's filters: an offer is kept if in one of its categories (or below one)
    and with one of its themes, where it names any."""
    categories, themes = request.categories, request.themes

    def keep(offer: OfferDef) -> bool:
        if categories and not any(c in offer.chain for c in categories):
            return False
        if themes and not any(t in offer.themes for t in themes):
            return False
        return True
    return keep


def _fit(plan: Plan, stored: dict) -> dict:
    """The stored profile under the live schema: attributes it no longer declares, or whose
    type changed, or whose value is now outside their closed set or range, are left out (the
    profile was written under another catalog). Scalars of the declared type pass as they
    are (attributes with a domain never do); the rest goes through the schema's conversion."""
    out, rest, scalars, sets = {}, {}, plan.scalars, plan.sets
    for k, v in stored.items():
        t = scalars.get(k)
        if t is not None and type(v) is t and (t is not float or v - v == 0):
            out[k] = v
        elif (e := sets.get(k)) is not None and type(v) is frozenset and all(type(x) is e for x in v):
            out[k] = v
        else:
            rest[k] = v
    if rest:
        out.update(_convert(plan.catalog.contact, rest, plan.catalog.domains))
    return out


def _convert(schema: dict, stored: dict, domains: dict) -> dict:
    known = {k: v for k, v in stored.items() if k in schema}
    try:
        return check_attributes(schema, known, "contact", domains)
    except InputError:
        out = {}
        for k, v in known.items():
            try:
                out.update(check_attributes(schema, {k: v}, "contact", domains))
            except InputError:
                pass
        return out


def _removed(compiled, pos: int, rule: int, args, everything: bool) -> Explained:
    """An offer a rule removed: the rule, why it was not true, and with `everything` the
    offer's other rules not true either."""
    also = ()
    if everything:
        also = tuple(_removed(compiled, pos, other, args, False)
                     for other in compiled.failing(pos, *args) if other != rule)
    ref = compiled.rules[rule]
    return Explained(compiled.offers[pos].name, ref.kind, rule=str(ref),
                     why=compiled.why(rule, *args), also=also)
