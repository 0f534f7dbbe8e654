"""A simulation report as one self-contained HTML page: inline CSS and SVG charts drawn
here, no script and nothing fetched, so it opens anywhere, offline. Every text that comes
from a catalog or a population is escaped."""
from __future__ import annotations

from html import escape

COLORS = ("#2f6db5", "#e0892f", "#4f9d57", "#b5483f", "#7d5ba6", "#8c6d46", "#c46fb0", "#6e6e6e")
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.note { color: #666; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
"""


def page(report: dict) -> str:
    """The HTML page of a report (`Report.to_json()`)."""
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
           f"<title>offerd simulation {escape(report['catalog'][:12])}</title><style>{STYLE}</style></head><body>",
           f"<h1>Simulation of catalog {escape(report['catalog'][:12])}</h1>",
           f"<p class=note>{report['contacts']:,} contacts decided at {escape(report['at'])}, "
           f"{report['bad_rows']:,} bad rows skipped; caps {'applied in order' if report['caps_applied'] else 'ignored'}; "
           f"{report['seconds']:.1f} s.</p>"]
    for name, space in report["spaces"].items():
        out.append(f"<h2>Space {escape(name)}</h2>")
        out.append(f"<p>{space['fallback_only']:,} contacts got only the fallback, {space['nothing']:,} got nothing.</p>")
        out.append("<h3>Offers by rank</h3>")
        out.append(_by_rank(space))
        out.append("<h3>Eliminations by rule</h3>")
        out.append(_eliminations(space))
        out.append(_offer_table(space, report["contacts"]))
        if space["caps"]:
            out.append("<h3>Caps that bound during the run</h3><table><tr><th>cap</th><th>offer</th>"
                       "<th>first refused at line</th><th>refused</th></tr>")
            for rule, c in space["caps"].items():
                out.append(f"<tr><td class=text>{escape(rule)}</td><td class=text>{escape(c['offer'])}</td>"
                           f"<td>{c['first_bound_line']:,}</td><td>{c['refused']:,}</td></tr>")
            out.append("</table>")
    if "compare" in report:
        out.append(_compare(report["compare"]))
    out.append("</body></html>")
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


def _eliminations(space: dict) -> str:
    """Horizontal bars: per rule, the offer-contact pairs it eliminated (the 15 biggest)."""
    totals: dict[str, int] = {}
    for o in space["offers"].values():
        for rule, n in o["eliminated"].items():
            totals[rule] = totals.get(rule, 0) + n
    if not totals:
        return "<p class=note>No rule eliminated anything.</p>"
    worst = sorted(totals.items(), key=lambda kv: -kv[1])[:15]
    top = worst[0][1]
    rows = [f'<text x="395" y="{i * 22 + 13}" text-anchor="end">{escape(_short(rule))}<title>{escape(rule)}</title></text>'
            f'<rect x="400" y="{i * 22}" width="{400 * n / top:.1f}" height="18" fill="{COLORS[3]}">'
            f'<title>{n:,}</title></rect><text x="{405 + 400 * n / top:.1f}" y="{i * 22 + 13}">{n:,}</text>'
            for i, (rule, n) in enumerate(worst)]
    height = len(worst) * 22
    return (f'<svg class="chart eliminations" width="900" height="{height}" viewBox="0 0 900 {height}" '
            f'role="img" aria-label="eliminations by rule">{"".join(rows)}</svg>')


def _short(rule: str) -> str:
    return rule if len(rule) <= 60 else rule[:57] + "..."


def _offer_table(space: dict, contacts: int) -> str:
    out = ["<table><tr><th>offer</th><th>proposed</th><th>share</th><th>eligible</th><th>capped</th>"
           "<th>earlier space</th><th>weight p50 (min-max)</th></tr>"]
    for name, o in sorted(space["offers"].items(), key=lambda kv: -kv[1]["proposed"]):
        w = o["weight"]
        weight = f"{w['p50']:.4g} ({w['min']:.4g}-{w['max']:.4g})" if w else ""
        out.append(f"<tr><td>{escape(name)}</td><td>{o['proposed']:,}</td><td>{o['share']:.1%}</td>"
                   f"<td>{o['eligible']:,}</td><td>{o['refused_by_caps_in_run']:,}</td>"
                   f"<td>{o['proposed_in_an_earlier_space']:,}</td><td>{weight}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _compare(compare: dict) -> str:
    out = [f"<h2>Compared with catalog {escape(compare['catalog'][:12])}</h2>"]
    for name, c in compare["spaces"].items():
        out.append(f"<h3>Space {escape(name)}: {c['contacts_changed']:,} contacts change offers "
                   f"({c['share']:.1%}), {c['only_reordered']:,} of them only in rank</h3>")
        out.append("<table><tr><th>offer</th><th>gained</th><th>lost</th><th>lost mostly because</th></tr>")
        for offer in sorted(set(c["gained"]) | set(c["lost"])):
            lost = c["lost"].get(offer)
            why = escape(next(iter(lost["because"]))) if lost else ""
            out.append(f"<tr><td>{escape(offer)}</td><td>{c['gained'].get(offer, 0):,}</td>"
                       f"<td>{lost['contacts'] if lost else 0:,}</td><td class=text>{why}</td></tr>")
        out.append("</table>")
    return "\n".join(out)
