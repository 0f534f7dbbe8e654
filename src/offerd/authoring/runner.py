"""Running catalog tests: each case against a fresh store holding its history, decided with
explain by the engine the server uses, compared with what the case expects; the report in
pytest's shape and as JUnit XML."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ..compiler import SpaceCache
from ..decide_view import OUTCOMES
from ..domain import NewProposition
from ..engine import Engine, EngineError, Request
from ..lang.catalog import Catalog
from ..store import Contact, Store, StoreError
from .cases import Case, Reason
from .files import write_atomically

_LOCATION = re.compile(r"[^\s:]+:\d+(:\d+)?")  # file:line or file:line:col
# what XML 1.0 cannot hold, even as a character reference (TOML strings may: "\u0007")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class Result:
    case: Case
    outcome: str  # passed, failed or error
    problems: list[str] = field(default_factory=list)  # each: what was expected, what came
    explain: str = ""  # the explain of the offers that differ, as `offerd decide --explain` shows it
    seconds: float = 0.0

    @property
    def letter(self) -> str:
        return {"passed": ".", "failed": "F", "error": "E"}[self.outcome]

    def text(self) -> str:
        """The failure as the report shows it: where the case is, each problem, the explain."""
        out = [f"{self.case.file}:{self.case.line}: {shown(self.case.name)}", *self.problems]
        if self.explain:
            out += ["", self.explain.rstrip("\n")]
        return "\n".join(out)


class Runner:
    """Runs cases of one checked catalog, compiled once for all of them; each case gets a
    store of its own in a temporary folder, removed by `close`."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.cache = SpaceCache()
        self.folder = tempfile.mkdtemp(prefix="offerd-test-")
        self.runs = 0

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, case: Case) -> Result:
        started = time.perf_counter()
        self.runs += 1
        path = os.path.join(self.folder, str(self.runs))
        try:
            with Store(path, durability="fast") as store:
                engine = Engine(store, self.catalog, self.cache)
                self.write_history(engine, store, case)
                decision = engine.decide(Request(
                    spaces=case.spaces, contact_id=case.contact_id, attributes=case.attributes,
                    context=case.context, max_offers=case.max_offers, categories=case.categories,
                    themes=case.themes, explain=True, time=case.time))
        except (EngineError, StoreError, OSError) as e:
            return Result(case, "error", [f"error: {e}"], seconds=time.perf_counter() - started)
        except Exception as e:  # offerd's own fault: this case errs, the others still run
            said = " ".join(str(e).split())
            return Result(case, "error", [f"unexpected error: {type(e).__name__}: {said}"],
                          seconds=time.perf_counter() - started)
        finally:
            shutil.rmtree(path, ignore_errors=True)
        problems, differ = compare(case, decision)
        result = Result(case, "failed" if problems else "passed", problems, seconds=time.perf_counter() - started)
        if problems:
            result.explain = explained(decision, differ)
        return result

    def write_history(self, engine: Engine, store: Store, case: Case) -> None:
        """Each entry as the propositions it stands for, made at its time, and its status
        reported at its time as a status report is. Written without their cap checks: the
        history is what happened, whether or not today's caps would have let it."""
        offers, reports = self.catalog.offers_by_name, []
        for past in sorted(case.history, key=lambda p: p.at):
            offer = offers[past.offer]
            proposition = NewProposition(offer.name, past.space, offer.chain, (), offer.groups)
            ids = store.record_decision(Contact(past.contact or case.contact_id), past.at.timestamp(),
                                        [proposition] * past.count)
            if past.status != "proposed":
                reports += [(pid.hex(), past.status, past.status_at or past.at) for pid in ids]
        if reports:  # sent together, as a server's concurrent reports are: group-committed
            asyncio.run(_report(engine, reports))


async def _report(engine: Engine, reports) -> None:
    await asyncio.gather(*(engine.record_async(*r) for r in reports))


def shown(text: str) -> str:
    """A name as a report prints it: characters that would act on the terminal (escape
    sequences, new lines) written as `\\uXXXX`."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _kind(kind: str | None) -> str:
    if kind is None:
        return "(none)"
    text = OUTCOMES.get(kind, kind)
    return kind if text == kind else f"{text} ({kind})"


def _said(offers) -> str:
    return ", ".join(offers) or "(none)"


def _pair(what: str, expected: str, got: str) -> list[str]:
    return [what, f"  expected: {expected}", f"  got:      {got}"]


def compare(case: Case, decision) -> tuple[list[str], dict[str, set[str]]]:
    """What differs from the case's expectations, one text each, and the offers concerned
    per space (whose explain the report shows)."""
    problems: list[str] = []
    differ: dict[str, set[str]] = {}
    spaces = {r.space: r for r in decision.spaces}
    for space, expected in case.expect.items():
        got = tuple(p.offer for p in spaces[space].proposals)
        if got != expected:
            problems += _pair(f"{space}: offers", _said(expected), _said(got))
            wrong = {o for i, o in enumerate(expected) if i >= len(got) or got[i] != o}
            wrong |= {o for i, o in enumerate(got) if i >= len(expected) or expected[i] != o}
            differ.setdefault(space, set()).update(wrong)
    for space, offers in case.content.items():
        proposals = {p.offer: p for p in spaces[space].proposals}
        for offer, fields in offers.items():
            p = proposals.get(offer)
            if p is None:
                problems += _pair(f"{space}: {offer}: content", "proposed", "not proposed")
                differ.setdefault(space, set()).add(offer)
                continue
            for name, text in fields.items():
                got = p.content.get(name)
                if got != text:
                    problems += _pair(f"{space}: {offer}.{name}", json.dumps(text, ensure_ascii=False),
                                      "(absent)" if got is None else json.dumps(got, ensure_ascii=False))
                    differ.setdefault(space, set()).add(offer)
    for space, offers in case.explain.items():
        explained = {}
        for x in spaces[space].explain or ():
            explained.setdefault(x.offer, x)
        for offer, reason in offers.items():
            wrong = _mismatch(reason, explained.get(offer))
            if wrong:
                problems += _pair(f"{space}: {offer}: explain", *wrong)
                differ.setdefault(space, set()).add(offer)
    return problems, differ


def _mismatch(reason: Reason, x) -> tuple[str, str] | None:
    """(expected, got) if the explain `x` is not what `reason` says, else None."""
    if x is None:
        return _reason(reason), "not in the explain (a space's fallback is listed only when it wins)"
    why = x.why
    clause = why.clause.text if why is not None and why.clause is not None else None
    rule = _whole(x.rule, why)
    if (reason.kind is not None and reason.kind != x.kind
            or reason.rule is not None and not rule_matches(reason.rule, rule)
            or reason.clause is not None and (clause is None or _flat(reason.clause) not in _flat(clause))):
        return _reason(reason), _got(x.kind, rule, clause)
    return None


def _whole(rule: str | None, why) -> str | None:
    """`file:line:col: owner: text` with the rule's whole text (the engine's names a rule
    of several clauses by its keyword alone, `eligible`)."""
    if rule is None or why is None or not why.rule_text:
        return rule
    location, _, rest = rule.partition(": ")
    owner = rest.partition(": ")[0]
    return f"{location}: {owner}: {why.rule_text}"


def rule_matches(expected: str, rule: str | None) -> bool:
    """`file:line[:col]` matches the rule's place; other text, a piece of `owner: rule text`
    (`rule`: `file:line:col: owner: text`, the text whole; spaces between words count as one)."""
    if rule is None:
        return False
    location, _, rest = rule.partition(": ")
    if _LOCATION.fullmatch(expected.strip()):
        return location == expected.strip() or location.startswith(expected.strip() + ":")
    return _flat(expected) in _flat(rest)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _reason(r: Reason) -> str:
    parts = [_kind(r.kind)] if r.kind else []
    parts += [f"rule {r.rule}"] if r.rule else []
    parts += [f"clause {r.clause}"] if r.clause else []
    return ", ".join(parts)


def _got(kind: str, rule: str | None, clause: str | None) -> str:
    parts = [_kind(kind)]
    if rule:
        parts.append(f"rule {rule}")
    if clause:
        parts.append(f"clause {clause}")
    return ", ".join(parts)


def explained(decision, differ: dict[str, set[str]], width: int | None = None) -> str:
    """The spaces where something differs, each with its propositions and the explain of
    the offers concerned, as `offerd decide --explain` shows them."""
    from ..decide_view import render
    from ..server.convert import response

    answer = response(decision)
    for space in list(answer.spaces):
        if space.space not in differ:
            answer.spaces.remove(space)
            continue
        keep = [x for x in space.explain if x.offer in differ[space.space]]
        del space.explain[:]
        space.explain.extend(keep)
    return render(answer, width)


# --- the report --------------------------------------------------------------------------


def summary(results: list[Result], seconds: float, deselected: int = 0) -> str:
    """`12 passed, 1 failed in 0.31s`, as pytest ends."""
    count = {k: sum(r.outcome == k for r in results) for k in ("passed", "failed", "error")}
    parts = [f"{count['passed']} passed"]
    parts += [f"{count['failed']} failed"] if count["failed"] else []
    parts += [f"{count['error']} error{'s' if count['error'] != 1 else ''}"] if count["error"] else []
    parts += [f"{deselected} deselected"] if deselected else []
    return f"{', '.join(parts)} in {seconds:.2f}s"


def rule(title: str, width: int = 80, char: str = "=") -> str:
    """`==== title ====` across the width, as pytest heads its sections."""
    title = f" {title} "
    left = max((width - len(title)) // 2, 3)
    return char * left + title + char * max(width - left - len(title), 3)


def _xml(text: str) -> str:
    """`text` with the characters XML cannot carry written as `\\uXXXX`."""
    return _NOT_XML.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def junit(path: str, results: list[Result], seconds: float) -> None:
    """The results as JUnit XML (one testcase per case), written whole or not at all."""
    count = {k: str(sum(r.outcome == k for r in results)) for k in ("failed", "error")}
    suites = ET.Element("testsuites", name="offerd test", tests=str(len(results)), failures=count["failed"],
                        errors=count["error"], time=f"{seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name="offerd test", tests=str(len(results)),
                          failures=count["failed"], errors=count["error"], skipped="0", time=f"{seconds:.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=_xml(r.case.file.removesuffix(".test.toml")),
                             name=_xml(r.case.name), file=_xml(r.case.file), line=str(r.case.line),
                             time=f"{r.seconds:.3f}")
        if r.outcome != "passed":
            tag = "failure" if r.outcome == "failed" else "error"
            message = " ".join(line.strip() for line in r.problems[:3]) or r.outcome
            ET.SubElement(case, tag, message=_xml(message)).text = _xml(r.text())
    write_atomically(path, ET.tostring(suites, encoding="utf-8", xml_declaration=True))
