"""The engine's conformance suite: tests/conformance/*.case, one scenario each, run against
a real LMDB store in a temp dir. The format is documented in tests/conformance/README.md."""
from __future__ import annotations

import datetime
import json
import os
import re

import pytest

from offerd import engine as eng
from offerd.lang import check
from offerd.lang.values import check_attributes
from offerd.store import Contact, Store

HERE = os.path.join(os.path.dirname(__file__), "conformance")
CASES = sorted(f for f in os.listdir(HERE) if f.endswith(".case"))
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
OPTION_WORDS = {"at", "max", "context", "attrs", "dry", "categories", "themes"}


def split_file(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    files, steps, current, lineno = {}, [], None, 0
    for lineno, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^=== (file (\S+)|steps)\s*$", line)
        if m:
            current = m.group(2) or "steps"
            if current != "steps":
                files[current] = ""
            continue
        if current is None:
            continue
        if current == "steps":
            stripped = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            if stripped:
                steps.append((lineno, stripped))
        else:
            files[current] += line + "\n"
    return files, steps


def words(text: str) -> list[str]:
    """Whitespace-separated words, a {...} JSON object kept whole."""
    out, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(text[i:j])
            i = j
        else:
            j = i
            while j < len(text) and not text[j].isspace():
                j += 1
            out.append(text[i:j])
            i = j
    return out


class Scenario:
    def __init__(self, path: str, tmp_path):
        self.path = path
        files, self.steps = split_file(open(path, encoding="utf-8").read())
        self.catalog = check(files)
        self.store = Store(str(tmp_path / "db"))
        self.engine = eng.Engine(self.store, self.catalog)
        self.now: datetime.datetime | None = None
        self.last: eng.Decision | None = None
        self.ids: dict[str, str] = {}  # offer → its latest proposition id

    def time(self, text: str) -> datetime.datetime:
        m = re.fullmatch(r"\+((?:\d+[smhd])+)", text)
        if m:
            seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", m.group(1)))
            self.now += datetime.timedelta(seconds=seconds)
        else:
            self.now = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return self.now

    def who(self, text: str) -> dict:
        if text == "-":
            return {"contact_id": None}
        if text.startswith("~"):
            return {"contact_id": text[1:], "anonymous": True}
        return {"contact_id": text}

    def values(self, attrs: dict) -> dict:
        """JSON has no dates: an ISO date string for a date attribute becomes a date (an
        invalid one stays a string, for the engine to refuse)."""
        out = dict(attrs)
        for k, v in attrs.items():
            t = self.catalog.contact.get(k)
            if t is not None and t.name == "date" and isinstance(v, str):
                try:
                    out[k] = datetime.date.fromisoformat(v)
                except ValueError:
                    pass
        return out

    def request(self, ws: list[str], explain: bool = False) -> eng.Request:
        args = {**self.who(ws[0]), "spaces": tuple(ws[1].split(",")), "explain": explain}
        i = 2
        while i < len(ws):
            w = ws[i]
            if w == "dry":
                args["dry_run"] = True
                i += 1
                continue
            value = ws[i + 1]
            if w == "at":
                args["time"] = self.time(value)
            elif w == "max":
                args["max_offers"] = int(value)
            elif w in ("context", "attrs"):
                args["context" if w == "context" else "attributes"] = self.values(json.loads(value))
            elif w in ("categories", "themes"):
                args[w] = tuple(value.split(","))
            else:
                raise AssertionError(f"unknown option {w!r}")
            i += 2
        args.setdefault("time", self.now)
        return eng.Request(**args)

    def run(self) -> None:
        for lineno, line in self.steps:
            where = f"{os.path.basename(self.path)}:{lineno}: {line}"
            command, _, rest = line.partition(" ")
            body, _, expect = rest.partition("=>")
            try:
                getattr(self, "do_" + command)(words(body), expect.strip(), where)
            except AssertionError as e:
                raise AssertionError(f"{where}\n{e}") from None

    def expect_error(self, fn, expect: str, where: str):
        """Run fn; if `expect` is `error Kind [text]`, the call must raise that."""
        m = re.fullmatch(r"error (\w+)(?: (.*))?", expect)
        if not m:
            return fn()
        with pytest.raises(Exception) as info:
            fn()
        assert type(info.value).__name__ == m.group(1), f"raised {type(info.value).__name__}: {info.value}"
        if m.group(2):
            assert m.group(2).strip('"') in str(info.value), str(info.value)
        return None

    # --- commands ------------------------------------------------------------------------

    def do_now(self, ws, expect, where):
        self.time(ws[0])

    def do_profile(self, ws, expect, where):
        attrs = check_attributes(self.catalog.contact, self.values(json.loads(ws[1])), "contact", self.catalog.domains)
        self.store.put_profile(Contact(ws[0]), attrs)

    def do_decide(self, ws, expect, where):
        decision = self.expect_error(lambda: self.engine.decide(self.request(ws)), expect, where)
        if decision is None:
            return
        self.last = decision
        for result in decision.spaces:
            for p in result.proposals:
                if p.id is not None:
                    self.ids[p.offer] = p.id
        got = {r.space: [p.offer for p in r.proposals] for r in decision.spaces}
        if "|" in expect or ":" in expect.split(",")[0]:
            want = {}
            for part in expect.split("|"):
                space, _, offers = part.partition(":")
                want[space.strip()] = _offers(offers)
        else:
            want = {decision.spaces[0].space: _offers(expect)}
        assert got == want, f"got {got}, expected {want}"

    def do_content(self, ws, expect, where):
        offer, fld = ws[0], ws[1]
        text = " ".join(ws[3:]) if len(ws) > 2 and ws[2] == "=" else ""
        got = [p.content.get(fld) for r in self.last.spaces for p in r.proposals if p.offer == offer]
        assert got, f"offer {offer} is not in the last decision"
        assert got[0] == json.loads(text) if text.startswith('"') else got[0] == text, f"got {got[0]!r}"

    def do_weight(self, ws, expect, where):
        got = [p.weight for r in self.last.spaces for p in r.proposals if p.offer == ws[0]]
        assert got and got[0] == pytest.approx(float(expect)), f"got {got}"

    def do_record(self, ws, expect, where):
        pid = self.ids.get(ws[0], ws[0])
        at = self.time(ws[3]) if len(ws) > 3 and ws[2] == "at" else self.now
        if expect not in ("changed", "unchanged") and not expect.startswith("error "):
            raise AssertionError(f"unknown expectation {expect!r}: changed, unchanged or error KIND [TEXT]")
        changed = self.expect_error(lambda: self.engine.record(pid, ws[1], at), expect, where)
        if expect in ("changed", "unchanged"):
            assert changed == (expect == "changed"), f"changed: {changed}"

    def do_explain(self, ws, expect, where):
        decision = self.engine.decide(self.request(ws, explain=True))
        got = {x.offer: x for r in decision.spaces for x in r.explain}
        for item in expect.split(";"):
            offer, kind = item.strip().split(" ", 1)
            kind, _, at = kind.partition("@")
            x = got.get(offer)
            assert x is not None, f"{offer} is not explained: {list(got)}"
            assert x.kind == kind.strip(), f"{offer}: {x.kind} ({x.rule}), expected {kind.strip()}"
            if at:
                assert x.rule and x.rule.startswith(at.strip() + ":"), f"{offer}: rule {x.rule}"


def _offers(text: str) -> list[str]:
    text = text.strip()
    return [] if text == "-" else [o.strip() for o in text.split(",")]


@pytest.mark.parametrize("case", CASES)
def test_conformance(case, tmp_path):
    scenario = Scenario(os.path.join(HERE, case), tmp_path)
    try:
        scenario.run()
    finally:
        scenario.store.close()


def test_every_case_has_steps():
    assert len(CASES) >= 10
    for case in CASES:
        files, steps = split_file(open(os.path.join(HERE, case), encoding="utf-8").read())
        assert files and steps, case


def test_an_unknown_expectation_fails_the_case(tmp_path):
    """A typo in an expectation (`=> chnaged`) is not a step that checks nothing."""
    path = tmp_path / "typo.case"
    path.write_text("=== file 00.offer\nschema contact { }\nschema context { }\nspace web { limit 1 }\n"
                    "offer a { spaces web  weight 1 }\n=== steps\nnow 2026-11-02T09:00:00Z\n"
                    "decide al web => a\nrecord a presented => chnaged\n")
    scenario = Scenario(str(path), tmp_path)
    try:
        with pytest.raises(AssertionError, match="unknown expectation 'chnaged'"):
            scenario.run()
    finally:
        scenario.store.close()
