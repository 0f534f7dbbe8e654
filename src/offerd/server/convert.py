"""Between offerd.v1 messages and the engine's plain values: requests, responses, times,
diagnostics (single values convert in offerd.wire, which a client uses alone)."""
from __future__ import annotations

import datetime

from ..engine import Decision, Request
from ..engine.model import BadRequest
from ..engine.retries import batch_key
from ..lang.diagnostics import Diagnostic
from ..v1 import offerd_pb2 as pb
from ..wire import from_value, to_value

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
# 9999-12-30T23:59:59.999999Z: a day short of the calendar's end, so that the time in the
# catalog's timezone (up to 14 hours ahead) is still a date Python can hold
MAX_TIME_US = 253402214399_999999
_MICROSECOND = datetime.timedelta(microseconds=1)


SCALARS = frozenset(("string_value", "int_value", "float_value", "bool_value"))


def attributes(prefix: str, values) -> dict:
    # keys then lookups: a protobuf map's items() goes through a slow generic view; the name
    # for an error is formatted only when there is one
    out = {}
    for k in values:
        v = values[k]
        kind = v.WhichOneof("kind")
        if kind in SCALARS:
            out[k] = getattr(v, kind)
            continue
        try:
            out[k] = from_value(f"{prefix}.{k}", v)
        except ValueError as e:
            raise BadRequest(str(e)) from None
    return out


def time_of(time_us: int, what: str = "time_us") -> datetime.datetime | None:
    if time_us == 0:
        return None
    if not 0 < time_us <= MAX_TIME_US:
        raise BadRequest(f"{what} must be microseconds since 1970-01-01 UTC, up to 9999-12-30 (0: now), not {time_us}")
    return EPOCH + datetime.timedelta(microseconds=time_us)  # exact: a float loses the last digits


def request(m: pb.DecideRequest) -> Request:
    if m.max_offers < 0:
        raise BadRequest(f"max_offers must be 0 (the space's limit) or more, not {m.max_offers}")
    contact = m.contact
    return Request(  # empty fields are not converted: this runs for every decision
        spaces=tuple(m.spaces), contact_id=contact.id or None, anonymous=contact.anonymous,
        attributes=attributes("contact", m.attributes) if m.attributes else {},
        context=attributes("context", m.context) if m.context else {},
        max_offers=m.max_offers or None,
        categories=tuple(m.categories) if m.categories else (),
        themes=tuple(m.themes) if m.themes else (),
        dry_run=m.dry_run, explain=m.explain or m.explain_all, explain_all=m.explain_all,
        time=time_of(m.time_us) if m.time_us else None,
        request_id=m.request_id or None,
        batch=_batch(m) if m.HasField("batch") else None,
    )


def _batch(m: pb.DecideRequest) -> bytes:
    row = m.batch
    if not 1 <= len(row.job) <= 32:
        raise BadRequest(f"batch.job must be 1 to 32 bytes, not {len(row.job)}")
    if row.line < 1:
        raise BadRequest(f"batch.line must be 1 or more, not {row.line}")
    if m.dry_run or not m.contact.id:
        raise BadRequest("a batch row is a recorded decision of a known contact: no dry_run, a contact id")
    return batch_key(row.job, row.line, m.contact.id)


def response(d: Decision, request_id: str = "") -> pb.DecideResponse:
    time_us = (d.time - EPOCH) // _MICROSECOND  # exact, as time_of reads it
    out = pb.DecideResponse(time_us=time_us, catalog=d.catalog, request_id=request_id, replayed=d.replayed)
    for r in d.spaces:
        space = out.spaces.add(space=r.space)
        for p in r.proposals:
            space.propositions.add(offer=p.offer, rank=p.rank, weight=p.weight or 0.0,
                                   has_weight=p.weight is not None, content=p.content, id=p.id or "",
                                   fallback=p.fallback)
        for x in r.explain or ():
            _explanation(space.explain.add(), x)
    return out


def _explanation(out: pb.Explanation, x) -> None:
    out.offer, out.kind, out.rule, out.weight, out.rank = x.offer, x.kind, x.rule or "", x.weight or 0.0, x.rank or 0
    why = x.why
    if why is not None:
        out.why.rule_text = why.rule_text
        if why.clause is not None:
            _clause(out.why.clause, why.clause)
        for c in why.operands:
            _clause(out.why.operands.add(), c)
        if why.limit is not None:
            lim = why.limit
            out.why.limit.CopyFrom(pb.Limit(
                count=lim.count, limit=lim.limit, window=lim.window, counts=lim.counts,
                frees_at_us=0 if lim.frees_at is None else (lim.frees_at - EPOCH) // _MICROSECOND))
    for other in x.also:
        _explanation(out.also.add(), other)


def _clause(out: pb.Clause, c) -> None:
    out.text, out.location, out.result = c.text, c.location, c.result
    for r in c.reads:
        out.reads.add(name=r.name, value=r.value or "", absent=r.value is None)


def schema(catalog) -> pb.SchemaResponse:
    """The live catalog's contact and context schemas, each attribute typed as ODL writes it."""
    out = pb.SchemaResponse(catalog=catalog.hash, timezone=catalog.timezone)
    for root, fields, into in (("contact", catalog.contact, out.contact), ("context", catalog.context, out.context)):
        for name, t in fields.items():
            a = into.add(name=name, type=str(t))
            d = catalog.domains.get((root, name))
            if d is not None and d.values is not None:
                a.values.extend(d.listed)
            elif d is not None:
                a.low.CopyFrom(to_value(d.low))
                a.high.CopyFrom(to_value(d.high))
    return out


def diagnostic(d: Diagnostic, sources: dict[str, str]) -> pb.Diagnostic:
    return pb.Diagnostic(file=d.span.file, line=d.span.line, column=d.span.col, severity=d.severity,
                         message=d.message, hint=d.hint or "", rendered=d.render(sources))
