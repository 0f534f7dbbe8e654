"""A simulation report as one self-contained HTML page: inline CSS and SVG charts drawn
here, no script and nothing fetched, so it opens anywhere, offline. Its tables are the text
report's (report_text.tables), so the page and the text show the same facts; the charts
draw what the tables beside them say. Every text that comes from a catalog or a
population is escaped."""
from __future__ import annotations

from html import escape

from .report_text import Table, cell, tables

COLORS = ("#2f6db5", "#e0892f", "#4f9d57", "#b5483f", "#7d5ba6", "#8c6d46", "#c46fb0", "#6e6e6e")
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th.text, td.text { text-align: left; }
.note { color: #666; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
"""


def page(report: dict) -> str:
    """The HTML page of a report (`Report.to_json()`)."""
    label = report.get("run", {}).get("catalog", {}).get("label") or report["catalog"][:12]
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
           f"<title>offerd simulation {escape(label)}</title><style>{STYLE}</style></head><body>",
           f"<h1>Simulation of catalog {escape(label)}</h1>"]
    for t in tables(report):
        out.append(f"<h{t.level}>{escape(t.title)}</h{t.level}>")
        if t.kind == "space":
            out.append("<h3>Offers by rank</h3>")
            out.append(_by_rank(report["spaces"][t.space]))
        if t.kind == "rules":
            out.append(_eliminations(t))
        out.append(_table(t))
    if report.get("bad_row_examples"):
        out.append("<h3>Bad rows skipped (the first ones)</h3><ul>")
        out += [f"<li>{escape(b)}</li>" for b in report["bad_row_examples"][:20]]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def _table(t: Table) -> str:
    out = [f"<p class=note>{escape(note)}</p>" for note in t.notes]
    if not t.rows:
        out.append("<p class=note>None.</p>")
        return "\n".join(out)
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in t.rows) for i in range(len(t.headers))]
    out.append("<table><tr>" + "".join(f"<th{'' if numeric[i] else ' class=text'}>{escape(h)}</th>"
                                       for i, h in enumerate(t.headers)) + "</tr>")
    for row in t.rows:
        out.append("<tr>" + "".join(f"<td{'' if numeric[i] else ' class=text'}>{escape(cell(v))}</td>"
                                    for i, v in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _by_rank(space: dict) -> str:
    """Horizontal stacked bars: per offer, the contacts that got it at each rank."""
    offers = sorted({o for r in space["ranks"] for o in r}, key=lambda o: -sum(r.get(o, 0) for r in space["ranks"]))
    if not offers:
        return "<p class=note>No offer was proposed.</p>"
    top = max(sum(r.get(o, 0) for r in space["ranks"]) for o in offers)
    rows = []
    for i, offer in enumerate(offers):
        x, bars = 0.0, []
        for rank, counts in enumerate(space["ranks"]):
            n = counts.get(offer, 0)
            if n:
                w = 600 * n / top
                share = space["rank_shares"][rank].get(offer, 0.0) if "rank_shares" in space else 0.0
                bars.append(f'<rect x="{200 + x:.1f}" y="{i * 22}" width="{w:.1f}" height="18" '
                            f'fill="{COLORS[rank % len(COLORS)]}"><title>rank {rank + 1}: {n:,} ({share:.1%})</title></rect>')
                x += w
        rows.append(f'<text x="195" y="{i * 22 + 13}" text-anchor="end">{escape(offer)}</text>' + "".join(bars)
                    + f'<text x="{205 + x:.1f}" y="{i * 22 + 13}">{sum(r.get(offer, 0) for r in space["ranks"]):,}</text>')
    legend = "".join(f'<rect x="{200 + k * 80}" y="{len(offers) * 22 + 6}" width="12" height="12" '
                     f'fill="{COLORS[k % len(COLORS)]}"/><text x="{216 + k * 80}" y="{len(offers) * 22 + 16}">rank {k + 1}</text>'
                     for k in range(len(space["ranks"])))
    height = len(offers) * 22 + 26
    return (f'<svg class="chart by-rank" width="900" height="{height}" viewBox="0 0 900 {height}" '
            f'role="img" aria-label="offers by rank">{"".join(rows)}{legend}</svg>')


def _eliminations(t: Table) -> str:
    """Horizontal bars: per rule, the contacts it removed an offer for (the 15 biggest)."""
    worst = [(row[2], row[0]) for row in t.rows if row[1] is not None][:15]  # rules, not their clause rows
    if not worst:
        return ""
    top = max(n for _, n in worst) or 1
    rows = [f'<text x="395" y="{i * 22 + 13}" text-anchor="end">{escape(_short(rule))}<title>{escape(rule)}</title></text>'
            f'<rect x="400" y="{i * 22}" width="{400 * n / top:.1f}" height="18" fill="{COLORS[3]}">'
            f'<title>{n:,} contacts</title></rect><text x="{405 + 400 * n / top:.1f}" y="{i * 22 + 13}">{n:,}</text>'
            for i, (rule, n) in enumerate(worst)]
    height = len(worst) * 22
    return (f'<svg class="chart eliminations" width="900" height="{height}" viewBox="0 0 900 {height}" '
            f'role="img" aria-label="contacts per rule">{"".join(rows)}</svg>')


def _short(rule: str) -> str:
    return rule if len(rule) <= 60 else rule[:57] + "..."
