"""A catalog folder as an editor sees it: its *.offer files on disk with open buffers winning,
each file's parse cached by its text, and a check of the whole folder that gives the same
diagnostics as `offerd check` (only the changed files are parsed again)."""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field

from ... import lang
from ...lang import nodes as n
from ...lang.catalog import Catalog
from ...lang.diagnostics import CatalogError, Diagnostic
from .incremental import CachingChecker, OfferCache, parse_file
from .index import FileIndex, build


@dataclass
class Result:
    """One check of a folder: what the editor is shown until the next."""

    texts: dict[str, str]  # every file checked, by name
    diagnostics: dict[str, list[Diagnostic]]  # every file, [] for a clean one
    indices: dict[str, FileIndex]  # each file's last index that parsed
    let_types: dict[str, str] = field(default_factory=dict)  # let → its type, when it checked
    catalog: Catalog | None = None
    seconds: float = 0.0
    definitions: dict | None = None  # (kind, name) → [(file, occurrence)]: navigation.definitions fills it


@dataclass
class _Parsed:
    text: str
    module: n.Module
    diagnostics: list[Diagnostic]
    chunks: dict  # incremental.parse_file's, for the next parse


class Folder:
    """The catalog of one folder. `check(buffers)` is not reentrant: the server runs one at a
    time per folder."""

    def __init__(self, path: str):
        self.path = path
        self._disk: dict[str, tuple[tuple[int, int], str | None, Diagnostic | None]] = {}
        self._parsed: dict[str, _Parsed] = {}
        self._indices: dict[str, FileIndex] = {}
        self._offers = OfferCache()
        self.result: Result | None = None
        self.reused = 0  # offers whose check the last check replayed

    def _read(self) -> tuple[dict[str, str], list[Diagnostic]]:
        """The folder's *.offer files as `offerd check` reads them, unchanged ones from memory."""
        sources, problems, seen = {}, [], {}
        try:
            entries = [e for e in os.scandir(self.path) if e.name.endswith(".offer")]
        except OSError:
            entries = []
        for entry in entries:
            try:
                st = entry.stat()
                key = (st.st_mtime_ns, st.st_size)
            except OSError:  # a link to nothing: `offerd check` cannot open it either, and says so
                key = None
            cached = self._disk.get(entry.name)
            if cached is None or cached[0] != key or key is None:
                cached = (key, *lang.read_file(self.path, entry.name))
            seen[entry.name] = cached
            if cached[1] is not None:
                sources[entry.name] = cached[1]
            else:
                problems.append(cached[2])
        self._disk = seen
        return sources, problems

    def check(self, buffers: dict[str, str], today: datetime.date | None = None) -> Result:
        """Check the folder with these open buffers (file name → text) over the disk."""
        started = time.perf_counter()
        sources, problems = self._read()
        problems = [p for p in problems if p.span.file not in buffers]
        sources.update(buffers)
        with lang.gc_paused():
            result = self._check(sources, problems, today)
        result.seconds = time.perf_counter() - started
        self.result = result
        return result

    def _check(self, sources: dict[str, str], problems: list[Diagnostic], today) -> Result:
        names = sorted(sources)
        found: list[Diagnostic] = []
        let_types, catalog = {}, None
        modules = [self._parse(name, sources[name]) for name in names]
        self._parsed = {name: self._parsed[name] for name in names}
        self._indices = {name: self._indices[name] for name in names if name in self._indices}
        if problems:  # an unreadable file stops `offerd check` before anything is parsed
            found = problems
        elif bad := lang.file_name_errors(sources):
            found = bad
        elif any(d.severity == "error" for m in modules for d in m.diagnostics):
            found = [d for m in modules for d in m.diagnostics]  # as lang.check: parse errors alone
        else:
            checker = CachingChecker([m.module for m in modules], sources, today, self._offers)
            checker.r.diagnostics.extend(d for m in modules for d in m.diagnostics)
            if today is None:
                checker.today = lang._today([m.module for m in modules])
            try:
                catalog = checker.run()
                found = list(catalog.diagnostics)
            except CatalogError as e:
                found = e.diagnostics
            checker.finish()
            self.reused = checker.reused
            let_types = {name: _type_text(e) for name, e in checker.exprs.lets.items()}
        unreadable = sorted({p.span.file for p in problems} - set(names))  # shown too, at their start
        return Result(dict(sources), _by_file(found, names + unreadable), dict(self._indices), let_types, catalog)

    def _parse(self, name: str, text: str) -> _Parsed:
        cached = self._parsed.get(name)
        if cached is None or cached.text != text:
            module, found, kept = parse_file(text, name, cached.chunks if cached is not None else {})
            cached = self._parsed[name] = _Parsed(text, module, found, kept)
            if not any(d.severity == "error" for d in found):  # a file that does not parse keeps its last index
                self._indices[name] = build(module, text, self._indices.get(name))
        return cached


def _by_file(found: list[Diagnostic], names: list[str]) -> dict[str, list[Diagnostic]]:
    """Each file's diagnostics; one that names no file of the folder goes to the first file."""
    out: dict[str, list[Diagnostic]] = {name: [] for name in names}
    for d in found:
        name = d.span.file if d.span.file in out else (names[0] if names else None)
        if name is not None:
            out[name].append(d)
    return out


def _type_text(e: n.Expr) -> str:
    if e.type is None:
        return "unknown"
    return f"{e.type}" + (" (may be null)" if e.nullable else "")
