"""The pygls server: document sync, a check of the document's folder after each change (one
at a time per folder, the newest text winning), and the requests answered from its result."""
from __future__ import annotations

import asyncio
import gc
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import TextDocument, Workspace

from ... import __version__
from ...lang.diagnostics import CatalogError, Diagnostic
from . import completion, navigation
from .folder import Folder, Result
from .positions import from_client, lines_of, span_range, to_client

SEVERITY = {"error": t.DiagnosticSeverity.Error, "warning": t.DiagnosticSeverity.Warning}
SYMBOL_KINDS = {"timezone": t.SymbolKind.Property, "schema": t.SymbolKind.Struct, "field": t.SymbolKind.Field,
                "let": t.SymbolKind.Variable, "space": t.SymbolKind.Namespace, "category": t.SymbolKind.Package,
                "group": t.SymbolKind.Module, "offer": t.SymbolKind.Class, "clause": t.SymbolKind.Property}
ITEM_KINDS = {"field": t.CompletionItemKind.Field, "let": t.CompletionItemKind.Variable,
              "offer": t.CompletionItemKind.Class, "space": t.CompletionItemKind.Module,
              "category": t.CompletionItemKind.Module, "group": t.CompletionItemKind.Module,
              "keyword": t.CompletionItemKind.Keyword, "function": t.CompletionItemKind.Function,
              "value": t.CompletionItemKind.Value}


_LSP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_NOT_LSP_BREAKS = re.compile("[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # where str.splitlines cuts too


class _Document(TextDocument):
    """pygls's document with LSP's lines: they end at \\n, \\r\\n or \\r alone. pygls cuts them with
    str.splitlines, at form feeds, U+0085 and U+2028 too (a comment or string may hold them), so an
    incremental change below one was applied lines away from where the editor made it."""

    @property
    def lines(self):
        source = self.source
        if _NOT_LSP_BREAKS.search(source) is None:  # the usual text: splitlines is faster
            return tuple(source.splitlines(True))
        return tuple(_LSP_LINE.findall(source))


class _Workspace(Workspace):
    def _create_text_document(self, doc_uri, source=None, version=None, language_id=None):
        return _Document(doc_uri, source=source, version=version, language_id=language_id,
                         sync_kind=self._sync_kind, position_codec=self._position_codec)


@dataclass
class _State:
    """One folder: its catalog, whether a newer text waits, the running check."""

    folder: Folder
    dirty: bool = False
    task: asyncio.Task | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    published: dict[str, tuple] = field(default_factory=dict)  # file → (version, diagnostics) sent


class OfferdServer(LanguageServer):
    def __init__(self):
        super().__init__("offerd", __version__, text_document_sync_kind=t.TextDocumentSyncKind.Incremental)
        self.folders: dict[str, _State] = {}
        self.checks = ThreadPoolExecutor(1, thread_name_prefix="offerd-check")  # off the event loop
        self.shutdown_asked = self.exit_asked = False

    @property
    def encoding(self) -> str:
        return self.workspace.position_encoding or t.PositionEncodingKind.Utf16

    # --- checking ----------------------------------------------------------------------

    def schedule(self, uri: str) -> None:
        """Check the folder of this document soon: now if no check runs, else right after."""
        located = _locate(uri)
        if located is None:
            return
        path, _ = located
        state = self.folders.get(path)
        if state is None:
            state = self.folders[path] = _State(Folder(path))
        state.dirty = True
        state.idle.clear()
        if state.task is None or state.task.done():
            state.task = asyncio.ensure_future(self._run(state))

    async def _run(self, state: _State) -> None:
        loop = asyncio.get_running_loop()
        try:
            while state.dirty:
                state.dirty = False  # a change from here on asks for one more round
                buffers, versions = self._buffers(state.folder.path)
                first = state.folder.result is None
                try:
                    result = await loop.run_in_executor(self.checks, state.folder.check, buffers)
                except Exception as e:  # a bug of ours: say so, keep serving
                    self.window_log_message(t.LogMessageParams(t.MessageType.Error,
                                                               f"offerd: checking failed: {type(e).__name__}: {e}"))
                    continue
                if first:  # the catalog's trees live as long as the folder: out of the collector's full
                    gc.freeze()  # passes (~90 ms at 1,000 offers, one keystroke in twenty or so); a check
                    # leaves no cycles to collect, and what is freed later goes by reference counts
                self._publish(state, result, versions)
        finally:
            state.idle.set()

    def _buffers(self, path: str) -> tuple[dict[str, str], dict[str, int | None]]:
        buffers, versions = {}, {}
        for uri, doc in list(self.workspace.text_documents.items()):
            located = _locate(uri)
            if located is not None and located[0] == path:
                buffers[located[1]] = doc.source
                versions[located[1]] = doc.version
        return buffers, versions

    def _publish(self, state: _State, result: Result, versions: dict[str, int | None]) -> None:
        gone = set(state.published) - set(result.diagnostics)
        for name in gone:
            uri = from_fs_path(os.path.join(state.folder.path, name))
            self.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri, []))
            del state.published[name]
        # edited files last: once a client has an edited file's new diagnostics, it has the rest
        edited = {name for name, v in versions.items() if state.published.get(name, (None,))[0] != v}
        for name, found in sorted(result.diagnostics.items(), key=lambda x: x[0] in edited):
            lines = lines_of(result.texts.get(name, "")) if found else []
            diagnostics = [self._diagnostic(d, lines) for d in found]
            key = (versions.get(name), repr(diagnostics))
            if state.published.get(name) == key:
                continue
            state.published[name] = key
            uri = from_fs_path(os.path.join(state.folder.path, name))
            self.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri, diagnostics, versions.get(name)))

    def _diagnostic(self, d: Diagnostic, lines: list[str]) -> t.Diagnostic:
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        return t.Diagnostic(span_range(lines, d.span, self.encoding), message, SEVERITY.get(d.severity), source="offerd")

    async def result_for(self, uri: str) -> tuple[Result, str] | None:
        """The folder's newest check (waiting for one under way), and the document's file name."""
        located = _locate(uri)
        state = self.folders.get(located[0]) if located else None
        if state is None:
            return None
        await state.idle.wait()
        result = state.folder.result
        return (result, located[1]) if result is not None else None

    def position(self, result: Result, name: str, pos: t.Position) -> tuple[int, int]:
        """An LSP position → offerd's 1-based (line, col) in the checked text."""
        index = result.indices.get(name)
        lines = index.lines if index is not None else lines_of(result.texts.get(name, ""))
        line, col = from_client(lines, pos, self.encoding)
        return line + 1, col + 1

    def location(self, result: Result, path: str, name: str, span) -> t.Location:
        index = result.indices.get(name)
        lines = index.lines if index is not None else []
        return t.Location(from_fs_path(os.path.join(path, name)), span_range(lines, span, self.encoding))


    def format(self, uri: str) -> list[t.TextEdit] | None:
        """`offerd fmt`'s layout as one edit of the whole document; none, and a message, for a
        file that does not parse."""
        from ..fmt import format_source

        if uri not in self.workspace.text_documents:  # an editor formats open documents; no other text is ours
            return None
        doc = self.workspace.get_text_document(uri)
        name = os.path.basename(to_fs_path(uri) or uri)
        try:
            formatted = format_source(doc.source, name)
        except CatalogError as e:
            first = (e.errors or e.diagnostics)[0]
            self.window_show_message(t.ShowMessageParams(
                t.MessageType.Warning, f"offerd: {name} is not formatted: it does not parse ({first.span}: "
                                       f"{first.message})"))
            return None
        if formatted == doc.source:
            return []
        lines = lines_of(doc.source)
        end = to_client(lines, len(lines) - 1, len(lines[-1]), self.encoding)
        return [t.TextEdit(t.Range(t.Position(0, 0), end), formatted)]


def _locate(uri: str) -> tuple[str, str] | None:
    """(folder, file name) of a document's URI; None for one that is not an *.offer file on disk."""
    if not uri.startswith("file:"):
        return None
    path = to_fs_path(uri)
    if not path or not path.endswith(".offer"):
        return None
    return os.path.dirname(os.path.abspath(path)), os.path.basename(path)


def create() -> OfferdServer:
    server = OfferdServer()

    @server.feature(t.INITIALIZE)
    def initialize(ls: OfferdServer, params: t.InitializeParams):
        ls.workspace.__class__ = _Workspace  # pygls made it just before: its documents are _Document

    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: OfferdServer, params: t.DidOpenTextDocumentParams):
        ls.schedule(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: OfferdServer, params: t.DidChangeTextDocumentParams):
        ls.schedule(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: OfferdServer, params: t.DidSaveTextDocumentParams):
        ls.schedule(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: OfferdServer, params: t.DidCloseTextDocumentParams):
        ls.schedule(params.text_document.uri)

    @server.feature(t.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(ls: OfferdServer, params: t.DidChangeWatchedFilesParams):
        """A file changed on disk (a checkout, another tool): its folder again, if it is open."""
        for change in params.changes:
            located = _locate(change.uri)
            if located is not None and located[0] in ls.folders:
                ls.schedule(change.uri)

    @server.feature(t.SHUTDOWN)
    def shutdown(ls: OfferdServer, *args):
        ls.shutdown_asked = True

    @server.feature(t.EXIT)
    def exit_(ls: OfferdServer, *args):
        ls.exit_asked = True

    @server.feature(t.TEXT_DOCUMENT_HOVER)
    async def hover(ls: OfferdServer, params: t.HoverParams):
        got = await ls.result_for(params.text_document.uri)
        if got is None:
            return None
        result, name = got
        found = navigation.hover(result, name, *ls.position(result, name, params.position))
        if found is None:
            return None
        text, o = found
        lines = result.indices[name].lines
        return t.Hover(t.MarkupContent(t.MarkupKind.Markdown, text), span_range(lines, o.span, ls.encoding))

    @server.feature(t.TEXT_DOCUMENT_DEFINITION)
    async def definition(ls: OfferdServer, params: t.DefinitionParams):
        got = await ls.result_for(params.text_document.uri)
        if got is None:
            return None
        result, name = got
        path = _locate(params.text_document.uri)[0]
        found = navigation.definition(result, name, *ls.position(result, name, params.position))
        return [ls.location(result, path, f, o.span) for f, o in found] or None

    @server.feature(t.TEXT_DOCUMENT_REFERENCES)
    async def references(ls: OfferdServer, params: t.ReferenceParams):
        got = await ls.result_for(params.text_document.uri)
        if got is None:
            return None
        result, name = got
        path = _locate(params.text_document.uri)[0]
        found = navigation.references(result, name, *ls.position(result, name, params.position),
                                      params.context.include_declaration)
        return [ls.location(result, path, f, o.span) for f, o in found]

    @server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[".", " ", "("]))
    async def complete(ls: OfferdServer, params: t.CompletionParams):
        got = await ls.result_for(params.text_document.uri)
        if got is None:
            return None
        result, name = got
        doc = ls.workspace.get_text_document(params.text_document.uri)
        lines = lines_of(doc.source)  # the buffer as typed: the last check may not have it yet
        line, col = from_client(lines, params.position, ls.encoding)
        before = lines[line][:col] if line < len(lines) else ""
        before = before[before.rfind("\r") + 1:]  # from the start of the editor's line
        items = completion.complete(result, before)
        return t.CompletionList(False, [t.CompletionItem(i.label, kind=ITEM_KINDS.get(i.kind), detail=i.detail)
                                        for i in items])

    @server.feature(t.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: OfferdServer, params: t.DocumentFormattingParams):
        return ls.format(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def document_symbols(ls: OfferdServer, params: t.DocumentSymbolParams):
        got = await ls.result_for(params.text_document.uri)
        if got is None or got[1] not in got[0].indices:
            return []
        result, name = got
        index = result.indices[name]

        def convert(s: completion.Symbol) -> t.DocumentSymbol:
            return t.DocumentSymbol(s.name, SYMBOL_KINDS[s.kind], span_range(index.lines, s.span, ls.encoding),
                                    span_range(index.lines, s.name_span, ls.encoding),
                                    children=[convert(c) for c in s.children] or None)

        return [convert(s) for s in completion.symbols(index)]

    return server
