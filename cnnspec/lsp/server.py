"""The language server: LSP messages on stdin -> answers and diagnostics on stdout.

Takes: JSON-RPC from an editor (pygls does the protocol). Returns: diagnostics as
you type, hover, go to definition, completion, quick fixes ("did you mean") and the
document outline, computed by the pure functions of `analysis`, `hover`, `complete`
and `outline`.

Checking runs on a worker thread, `DEBOUNCE` seconds after the last keystroke,
never on the event loop: a hover or completion asked while ResNet-152 is being
re-checked is answered at once, from the latest finished analysis. A check whose
document changed while it ran is dropped. After each check a second thread explains
every layer, so hover can show the arithmetic without computing on the loop.
`serve()` is `cnnspec lsp`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from ..version import __version__
from . import analysis as A
from .complete import completions
from .hover import definition, hover
from .outline import symbols

DEBOUNCE = 0.2  # seconds of quiet after a keystroke before checking
FIRST_WAIT = 10.0  # how long a request waits for a just-opened document's first check
EXPLAIN_WAIT = 2.0  # how long a hover waits for the arithmetic of the latest check

_SEVERITY = {"error": T.DiagnosticSeverity.Error, "warning": T.DiagnosticSeverity.Warning}
_SYMBOL = {"network": T.SymbolKind.Module, "block": T.SymbolKind.Function,
           "recipe": T.SymbolKind.Object, "entry": T.SymbolKind.Property,
           "group": T.SymbolKind.Namespace, "layer": T.SymbolKind.Field}
_COMPLETION = {"layer": T.CompletionItemKind.Class, "block": T.CompletionItemKind.Module,
               "keyword": T.CompletionItemKind.Keyword,
               "variable": T.CompletionItemKind.Variable,
               "argument": T.CompletionItemKind.Property,
               "function": T.CompletionItemKind.Function,
               "value": T.CompletionItemKind.Constant, "file": T.CompletionItemKind.File}
log = logging.getLogger(__name__)


class CnnLanguageServer(LanguageServer):
    def __init__(self):
        super().__init__("cnnspec", __version__,
                         text_document_sync_kind=T.TextDocumentSyncKind.Incremental)
        self.checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnspec-check")
        # explain's arithmetic for hover, made after each check on a thread of its own
        # so that the next check never waits behind it
        self.explainer = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="cnnspec-explain")
        self.explaining: dict[str, asyncio.Future] = {}
        self.latest: dict[str, A.Analysis] = {}  # by uri: the newest finished analysis
        self.parsed: dict[str, A.Analysis] = {}  # the newest whose text parsed
        self.pending: dict[str, asyncio.Task] = {}
        self.first: dict[str, asyncio.Future] = {}  # done once a document is analysed
        for name, method, options in (
                (T.TEXT_DOCUMENT_DID_OPEN, self.did_open, None),
                (T.TEXT_DOCUMENT_DID_CHANGE, self.did_change, None),
                (T.TEXT_DOCUMENT_DID_SAVE, self.did_save, None),
                (T.TEXT_DOCUMENT_DID_CLOSE, self.did_close, None),
                (T.WORKSPACE_DID_CHANGE_WATCHED_FILES, self.did_change_watched_files, None),
                (T.TEXT_DOCUMENT_HOVER, self.hover, None),
                (T.TEXT_DOCUMENT_DEFINITION, self.definition, None),
                (T.TEXT_DOCUMENT_COMPLETION, self.completion,
                 T.CompletionOptions(trigger_characters=['"', "/", "="])),
                (T.TEXT_DOCUMENT_DOCUMENT_SYMBOL, self.document_symbol, None),
                (T.TEXT_DOCUMENT_CODE_ACTION, self.code_action,
                 T.CodeActionOptions(code_action_kinds=[T.CodeActionKind.QuickFix])),
                (T.SHUTDOWN, self.on_shutdown, None)):
            self.feature(name, options)(_function(method))

    # ------------------------------------------------------------ checking

    def did_open(self, params: T.DidOpenTextDocumentParams) -> None:
        self.schedule(params.text_document.uri, 0)

    def did_change(self, params: T.DidChangeTextDocumentParams) -> None:
        """Check the document, and the open documents that import it: they read its
        unsaved text (`unsaved_texts`)."""
        changed = params.text_document.uri
        self.schedule(changed, DEBOUNCE)
        path = _path(changed)
        if path is None:
            return
        for uri, result in list(self.latest.items()):
            if uri != changed and A.imports_file(result, path):
                self.schedule(uri, 2 * DEBOUNCE)

    def did_save(self, params: T.DidSaveTextDocumentParams) -> None:
        """The saved file may be imported by the other open documents: check all."""
        for uri in list(self.workspace.text_documents):
            self.schedule(uri, 0 if uri == params.text_document.uri else DEBOUNCE)

    def did_change_watched_files(self, params: T.DidChangeWatchedFilesParams) -> None:
        """A `.cnn` file changed on disk (a block library): check the open documents."""
        if any(change.uri.endswith(".cnn") for change in params.changes):
            for uri in list(self.workspace.text_documents):
                self.schedule(uri, DEBOUNCE)

    def did_close(self, params: T.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        for table in (self.latest, self.parsed, self.first, self.explaining):
            table.pop(uri, None)
        self.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def schedule(self, uri: str, delay: float) -> None:
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.first.setdefault(uri, asyncio.get_running_loop().create_future())
        self.pending[uri] = asyncio.ensure_future(self.check(uri, delay))

    async def check(self, uri: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        document = self.workspace.text_documents.get(uri)
        if document is None:
            return
        version, text = document.version, document.source
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.checker, A.analyse, text,
                                                _path(uri), self.unsaved_texts(uri))
        except Exception:  # a checker bug: keep serving, say what happened
            log.exception("checking %s failed", uri)
            self.window_log_message(T.LogMessageParams(
                type=T.MessageType.Error,
                message=f"cnnspec: checking {uri} failed (see stderr)"))
            return
        current = self.workspace.text_documents.get(uri)
        if current is None or current.version != version:
            return  # typed over while checking: a newer check is on its way
        self.latest[uri] = result
        if result.module is not None:
            self.parsed[uri] = result
        waiting = self.first.get(uri)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
        codec, lines = current.position_codec, result.lines
        self.text_document_publish_diagnostics(T.PublishDiagnosticsParams(
            uri=uri, version=version,
            diagnostics=[_diagnostic(p, lines, codec) for p in result.problems]))
        self.explaining[uri] = loop.run_in_executor(self.explainer, self.warm, uri, result)

    def unsaved_texts(self, uri: str) -> dict[str, str]:
        """The other open documents' text by real path: an import of one of them
        reads what the editor shows, saved or not."""
        texts = {}
        for other, document in list(self.workspace.text_documents.items()):
            path = _path(other)
            if other != uri and path is not None:
                texts[os.path.realpath(path)] = document.source
        return texts

    def warm(self, uri: str, result: A.Analysis) -> None:
        """Explain every layer (on the explainer thread) unless a newer check came."""
        if self.latest.get(uri) is result:
            result.warm()

    async def analysis(self, uri: str, parsed: bool = True) -> A.Analysis | None:
        """The newest analysis of `uri` (whose text parsed, with `parsed`); a document
        just opened waits for its first one."""
        waiting = self.first.get(uri)
        if waiting is not None and not waiting.done():
            try:
                await asyncio.wait_for(asyncio.shield(waiting), FIRST_WAIT)
            except asyncio.TimeoutError:
                return None
        return (self.parsed if parsed else self.latest).get(uri)

    def position(self, uri: str, position: T.Position, result: A.Analysis):
        """The request's position in code points, or None when the analysis's text
        differs from the buffer on that line (its facts would be another line's)."""
        document = self.workspace.get_text_document(uri)
        lines = document.source.split("\n")
        point = document.position_codec.position_from_client_units(lines, position)
        then = result.lines
        now = lines[point.line] if point.line < len(lines) else None
        if point.line >= len(then) or then[point.line] != now:
            return None
        return point.line, point.character

    # ------------------------------------------------------------ requests

    async def hover(self, params: T.HoverParams) -> T.Hover | None:
        uri = params.text_document.uri
        result = await self.analysis(uri)
        explaining = self.explaining.get(uri)
        if result is not None and not result.explained and explaining is not None:
            await asyncio.wait([explaining], timeout=EXPLAIN_WAIT)
        where = result and self.position(uri, params.position, result)
        text = hover(result, *where, compute=False) if where else None
        if text is None:
            return None
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))

    async def code_action(self, params: T.CodeActionParams) -> list[T.CodeAction]:
        """Quick fixes: each "did you mean `X`?" in range, as an edit writing X."""
        uri = params.text_document.uri
        result = self.latest.get(uri)
        document = self.workspace.get_text_document(uri)
        if result is None or result.text != document.source:
            return []  # checked text is not the buffer's: its ranges would be off
        codec, lines = document.position_codec, result.lines
        wanted = params.range
        actions = []
        for problem in result.problems:
            if problem.fix is None:
                continue
            where = _range(problem.fix.range, lines, codec)
            if _before(where.end, wanted.start) or _before(wanted.end, where.start):
                continue
            actions.append(T.CodeAction(
                title=f"Replace with `{problem.fix.text}`", kind=T.CodeActionKind.QuickFix,
                diagnostics=[_diagnostic(problem, lines, codec)], is_preferred=True,
                edit=T.WorkspaceEdit(changes={uri: [T.TextEdit(
                    range=where, new_text=problem.fix.text)]})))
        return actions

    async def definition(self, params: T.DefinitionParams) -> T.Location | None:
        uri = params.text_document.uri
        result = await self.analysis(uri)
        where = result and self.position(uri, params.position, result)
        target = definition(result, *where) if where else None
        if target is None:
            return None
        codec = self.workspace.get_text_document(uri).position_codec
        here = result.path is None or A.same_file(target.path, result.path)
        return T.Location(uri=uri if here else _uri(target.path),
                          range=_range(target.range, target.text.split("\n"), codec))

    async def completion(self, params: T.CompletionParams) -> T.CompletionList:
        uri = params.text_document.uri
        result = await self.analysis(uri)
        document = self.workspace.get_text_document(uri)
        lines = document.source.split("\n")
        point = document.position_codec.position_from_client_units(lines, params.position)
        found = completions(result, document.source, point.line, point.character)
        items = [_completion_item(c, point, lines, document.position_codec) for c in found]
        return T.CompletionList(is_incomplete=False, items=items)

    async def document_symbol(self, params: T.DocumentSymbolParams) -> list:
        uri = params.text_document.uri
        result = await self.analysis(uri)
        if result is None:
            return []
        codec = self.workspace.get_text_document(uri).position_codec
        return [_symbol(s, result.lines, codec) for s in symbols(result)]

    def on_shutdown(self, params) -> None:
        for task in self.pending.values():
            task.cancel()
        for pool in (self.checker, self.explainer):
            pool.shutdown(wait=False, cancel_futures=True)


def _function(method):
    """A bound method as the plain function pygls registers (it tags the function)."""
    if asyncio.iscoroutinefunction(method):
        async def handle(params):
            return await method(params)
    else:
        def handle(params):
            return method(params)
    return handle


# ---------------------------------------------------------------- conversions


def _path(uri: str) -> str | None:
    """The file a `file:` uri names; None for an unsaved `untitled:` buffer."""
    return to_fs_path(uri) if uri.startswith("file:") else None


def _uri(path: str) -> str:
    return from_fs_path(str(Path(path).resolve())) or path


def _before(a: T.Position, b: T.Position) -> bool:
    return (a.line, a.character) < (b.line, b.character)


def _range(found: A.Range, lines: list[str], codec) -> T.Range:
    start = T.Position(line=found.start_line, character=found.start_character)
    end = T.Position(line=found.end_line, character=found.end_character)
    return T.Range(start=codec.position_to_client_units(lines, start),
                   end=codec.position_to_client_units(lines, end))


def _diagnostic(problem: A.Problem, lines: list[str], codec) -> T.Diagnostic:
    related = [T.DiagnosticRelatedInformation(
        location=T.Location(uri=_uri(r.path),
                            range=_range(r.range, r.text.split("\n"), codec)),
        message=r.message) for r in problem.related]
    return T.Diagnostic(range=_range(problem.range, lines, codec), message=problem.message,
                        severity=_SEVERITY[problem.severity], code=problem.code,
                        source="cnnspec", related_information=related or None)


def _completion_item(found, point, lines, codec) -> T.CompletionItem:
    edit = None
    if found.replace_from is not None:
        where = A.Range(point.line, found.replace_from, point.line, point.character)
        edit = T.TextEdit(range=_range(where, lines, codec), new_text=found.label)
    documentation = (T.MarkupContent(kind=T.MarkupKind.Markdown, value=found.documentation)
                     if found.documentation else None)
    return T.CompletionItem(label=found.label, kind=_COMPLETION[found.kind],
                            detail=found.detail or None, documentation=documentation,
                            insert_text=found.insert_text, text_edit=edit)


def _symbol(found, lines: list[str], codec) -> T.DocumentSymbol:
    return T.DocumentSymbol(
        name=found.name, kind=_SYMBOL[found.kind], range=_range(found.range, lines, codec),
        selection_range=_range(found.selection_range, lines, codec),
        detail=found.detail or None,
        children=[_symbol(c, lines, codec) for c in found.children])


def serve() -> None:
    """Serve one editor on stdin/stdout until it sends `exit`."""
    CnnLanguageServer().start_io()
