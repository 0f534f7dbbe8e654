"""The language stage: ODL source → checked catalog."""
from __future__ import annotations

import contextlib
import datetime
import gc
import os
import re
import zoneinfo

from .catalog import Catalog
from .checker import Checker
from .diagnostics import CatalogError, Diagnostic, Reporter, Span
from .parser import parse

MAX_FILES = 1000
# A catalog file's name: plain, so that no name sent to Deploy can point outside a folder
# if a version's files are ever written to one, or mislead in a diagnostic.
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,121}\.offer")  # at most 128 characters

__all__ = ["Catalog", "CatalogError", "Diagnostic", "check", "check_expression", "load"]


def read_dir(path: str) -> dict[str, str]:
    """The `*.offer` files of a folder, by name. Undecodable files raise CatalogError."""
    if not os.path.isdir(path):
        raise CatalogError([Diagnostic(Span(path, 0, 0, 0, 0), f"{path} is not a folder")])
    sources, report = {}, Reporter()
    names = sorted(f for f in os.listdir(path) if f.endswith(".offer"))
    if not names:
        report.error(Span(path, 0, 0, 0, 0), f"no *.offer files in {path}")
    if len(names) > MAX_FILES:
        report.error(Span(path, 0, 0, 0, 0), f"{len(names)} files; the limit is {MAX_FILES}")
    for name in names[:MAX_FILES]:
        text, problem = read_file(path, name)
        if problem is not None:
            report.diagnostics.append(problem)
        else:
            sources[name] = text
    if report.has_errors:
        raise CatalogError(report.diagnostics, sources)
    return sources


def read_file(folder: str, name: str) -> tuple[str | None, Diagnostic | None]:
    """One catalog file's text, or the error that it cannot be read (a folder named *.offer,
    no permission, a link to nothing) or is not UTF-8."""
    path = os.path.join(folder, name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, Diagnostic(Span(name, 0, 0, 0, 0), f"cannot read {path}: {e.strerror}")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return None, Diagnostic(Span(name, line, 1, line, 1), f"not valid UTF-8 (byte {e.start})")


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building large trees: they hold no
    garbage cycles, and without this, collections over the growing heap took half of
    the time to check a 10,000-offer catalog."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check(sources: dict[str, str], today: datetime.date | None = None) -> Catalog:
    """Parse and check a catalog given as {file name: text}. Raises CatalogError with
    every error; warnings are in `catalog.diagnostics`. `today` (default: the clock, in
    the catalog's timezone) only decides the "no longer valid" warning."""
    with gc_paused():
        return _check(sources, today)


def file_name_errors(names) -> list[Diagnostic]:
    """Names a catalog may not have, and too many files; these stop a check before parsing."""
    out = []
    if len(names) > MAX_FILES:
        out.append(Diagnostic(Span("<catalog>", 0, 0, 0, 0), f"{len(names)} files; the limit is {MAX_FILES}",
                              hint="merge small files"))
    bad = sorted(n for n in names if not FILE_NAME.fullmatch(n))  # every name is checked
    for name in bad[:20]:  # and at most 20 are shown
        shown = name if len(name) <= 80 else name[:77] + "..."
        out.append(Diagnostic(Span("<catalog>", 0, 0, 0, 0), f"file name {shown!r} is not allowed",
                              hint="use letters, digits, '_', '-' and '.', end in .offer, at most 128 "
                              "characters, no folders"))
    if len(bad) > 20:
        out.append(Diagnostic(Span("<catalog>", 0, 0, 0, 0), f"and {len(bad) - 20} more file names not allowed"))
    return out


def _check(sources, today):
    bad = file_name_errors(sources)
    if bad:
        raise CatalogError(bad, {})
    report = Reporter()
    modules = [parse(sources[name], name, report) for name in sorted(sources)]
    if report.has_errors:  # semantic errors of a half-parsed catalog only mislead
        raise CatalogError(report.diagnostics, sources)
    checker = Checker(modules, sources, today)
    checker.r.diagnostics.extend(report.diagnostics)
    if today is None:
        checker.today = _today(modules)
    return checker.run()


def load(path: str, today: datetime.date | None = None) -> Catalog:
    return check(read_dir(path), today)


def _today(modules) -> datetime.date:
    from . import nodes

    for m in modules:
        for d in m.decls:
            if isinstance(d, nodes.Timezone):
                try:
                    return datetime.datetime.now(zoneinfo.ZoneInfo(d.name)).date()
                except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                    break
    return datetime.datetime.now(datetime.timezone.utc).date()


def check_expression(catalog: Catalog, text: str, offer: str | None = None):
    """Parse and type one expression against a checked catalog's schemas and lets (tests,
    tools). `offer` gives `propensity` its offer. Raises CatalogError."""
    from .parser import parse_expr

    report = Reporter()
    modules = [parse(catalog.sources[name], name, report) for name in sorted(catalog.sources)]
    expr = parse_expr(text, "<expression>", report)
    sources = {**catalog.sources, "<expression>": text}
    if report.has_errors or expr is None:
        raise CatalogError(report.diagnostics, sources)
    checker = Checker(modules, sources)
    checked = checker.expression(expr, offer)
    if checker.r.has_errors:
        raise CatalogError(checker.r.diagnostics, sources)
    return checked
