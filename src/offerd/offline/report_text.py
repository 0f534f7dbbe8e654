"""A simulation report's tables, from its JSON (`Report.to_json()`): made once here as
rows of cells, printed as plain text here and drawn as HTML by report_html.py, so both
show the same facts."""
from __future__ import annotations

from dataclasses import dataclass, field

SHORT = 70  # characters of a rule's text in a column beside others; the rules table has it whole


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list] = field(default_factory=list)  # cells: str, int, float (a share) or None (empty)
    notes: list[str] = field(default_factory=list)  # lines said before the table
    kind: str = ""  # what the HTML page draws beside it: "space", "rules"
    level: int = 3  # its heading's, in HTML: 2 opens a part of the report
    space: str = ""  # the space it is about, if one


def rule_text(rule: dict | None, short: bool = False) -> str:
    """`file:line:col owner: text`, the text cut for a column if `short`."""
    if rule is None:
        return ""
    text = rule["text"]
    if short and len(text) > SHORT:
        text = text[:SHORT - 1] + "…"
    return f"{rule['at']} {rule['owner']}: {text}"


def _top(counts: dict, rules: dict | None = None) -> str:
    """The first of `counts` (the most first): `n what`."""
    if not counts:
        return ""
    key, n = next(iter(counts.items()))
    return f"{n:,} {rule_text(rules.get(key), True) if rules is not None else key}"


def inputs(report: dict) -> Table:
    run = report["run"]
    cat, pop = run["catalog"], run["population"]
    context = ", ".join(f"{k}={v}" for k, v in run["context"].items()) or "none"
    t = Table("Inputs", ["input", "value"], level=2)
    t.rows += [["catalog", f"{cat['label'] or '(no label)'} (hash {cat['hash']})"],
               ["decided at", run["at"]],
               ["context", f"{context} (a contact's own context values win)"],
               ["population", f"{pop['file'] or '(rows given directly)'}: {pop['contacts']:,} contacts, "
                              f"{pop['bad_rows']:,} bad rows skipped"],
               ["spaces", ", ".join(run["spaces"]) + " (decided in this order)"],
               ["by", ", ".join(run["by"]) or "none"],
               ["seed", f"{run['seed']} (the sample of contacts whose weights are shown)"],
               ["caps", "applied in population order" if run["caps_applied"] else "ignored"]]
    if "compare" in run:
        t.rows.append(["compared with", f"{run['compare']['label'] or '(no label)'} (hash {run['compare']['hash']})"])
    if "seconds" in report:  # left out of golden files
        workers = report["workers"]
        t.notes.append(f"{report['contacts']:,} contacts decided in {report['seconds']:.1f} s on {workers} "
                       f"process{'es' if workers != 1 else ''}")
    return t


def _weight(w: dict | None) -> str:
    return f"{w['p50']:.4g} ({w['min']:.4g} to {w['max']:.4g})" if w else ""


def space_tables(name: str, space: dict, contacts: int) -> list[Table]:
    rules = space["rules"]
    offers = Table(f"Space {name}", ["offer", "proposed", "share", "by rank", "eligible", "capped", "earlier space",
                                     "weight p50 (min to max)", "most eliminated by (contacts)"], kind="space", level=2, space=name)
    offers.notes.append(f"{contacts:,} contacts: {space['fallback_only']:,} got only the fallback, "
                        f"{space['nothing']:,} got nothing")
    for offer, o in space["offers"].items():
        offers.rows.append([offer, o["proposed"], o["share"], "/".join(f"{k:,}" for k in o["by_rank"]), o["eligible"],
                            o["refused_by_caps_in_run"], o["proposed_in_an_earlier_space"], _weight(o["weight"]),
                            _top(o["eliminated"], rules)])
    out = [offers]
    table = Table(f"Rules that removed offers in {name}", ["contacts", "offers removed", "rule"], kind="rules")
    table.notes.append("each contact counted once per rule, however many offers the rule removed for it; a rule "
                       "is counted where it is the first to remove an offer; below a rule of several clauses, "
                       "the contacts for whom each clause was the first not true")
    for r in rules.values():
        table.rows.append([r["contacts"], r["offers_removed"], rule_text(r)])
        if len(r["clauses"]) > 1:
            table.rows += [[c["contacts"], None, f"    clause: {c['text']}"] for c in r["clauses"] if c["contacts"]]
    out.append(table)
    if space["caps"]:
        caps = Table(f"Caps that refused offers during the run in {name}",
                     ["refused", "first at line", "cap", "filled by", "offers refused"])
        caps.rows += [[c["refused"], c["first_bound_line"], rule_text(c), c["scope"],
                       ", ".join(f"{o} {k:,}" for o, k in c["offers"].items())] for c in space["caps"].values()]
        out.append(caps)
    return out


def by_tables(report: dict) -> list[Table]:
    out = []
    for attribute, b in report.get("by", {}).items():
        for name, space in report["spaces"].items():
            t = Table(f"By {attribute} ({b['grouping']}), space {name}",
                      ["value", "contacts", "proposed", "fallback only", "nothing", "most proposed",
                       "most eliminated by (contacts)"], level=2)
            if b["counted_per_item"]:
                t.notes.append("a contact is counted under each of its items")
            for row in b["rows"]:
                s = row["spaces"][name]
                t.rows.append([row["value"], row["contacts"], s["proposed"], s["fallback_only"], s["nothing"],
                               _top(s["offers"]), _top(s["eliminated"], space["rules"])])
            out.append(t)
    return out


def compare_tables(report: dict) -> list[Table]:
    c = report.get("compare")
    if c is None:
        return []
    out = []
    for name, s in c["spaces"].items():
        t = Table(f"Compared with {c['label'] or '(no label)'} ({c['catalog'][:12]}), space {name}",
                  ["offer", "gained", "lost", "why a version does not propose it", "this", "other"], level=2)
        t.notes.append(f"{s['contacts_changed']:,} contacts change offers ({s['share']:.1%}), "
                       f"{s['only_reordered']:,} of them only in rank; gained: the other version proposes it and "
                       "this one does not (why: under this), lost: the reverse (why: under other)")
        for offer, o in s["offers"].items():
            for k, why in enumerate(o["why_not"]):
                reason = why["reason"] + (f": {rule_text(why['rule'])}" if why["rule"] else "")
                t.rows.append([offer if k == 0 else "", o["gained"] if k == 0 else None,
                               o["lost"] if k == 0 else None, reason, why["this"], why["other"]])
        out.append(t)
    return out


def tables(report: dict) -> list[Table]:
    out = [inputs(report)]
    for name, space in report["spaces"].items():
        out += space_tables(name, space, report["contacts"])
    return out + by_tables(report) + compare_tables(report)


def cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.1%}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def text(report: dict) -> str:
    """The report as plain-text tables."""
    out = []
    for t in tables(report):
        out += ["", t.title, *t.notes] if out else [t.title, *t.notes]
        if t.headers == ["input", "value"]:
            width = max(len(r[0]) for r in t.rows)
            out += [f"  {r[0]:<{width}}  {r[1]}" for r in t.rows]
            continue
        if not t.rows:
            out.append("  (none)")
            continue
        cells = [[cell(v) for v in row] for row in t.rows]
        numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in t.rows) for i in range(len(t.headers))]
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(t.headers)]
        last = len(t.headers) - 1

        def line(values):
            parts = [v.rjust(w) if numeric[i] else (v if i == last else v.ljust(w))
                     for i, (v, w) in enumerate(zip(values, widths))]
            return ("  " + "  ".join(parts)).rstrip()
        out.append(line(t.headers))
        out += [line(r) for r in cells]
    return "\n".join(out)
