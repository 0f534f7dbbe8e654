"""The audit log of AdminService: one line per call, refused ones included (a wrong token, a
broken catalog), saying who called, what, on which version, and how it ended.

Lines go to the logger "offerd.audit", so through the server's own log (plain, or JSON with
the fields as keys), and with `offerd serve --audit-log FILE` also to FILE as JSON lines,
appended (every worker appends to the same file, each line in one write). A request that is
not its method's message is refused before this (guard.py): counted and logged there, not
audited."""
from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os

from .logs import json_formatter

log = logging.getLogger("offerd.audit")
METHODS = ("Validate", "Deploy", "ListVersions", "Activate", "Rollback", "Simulate")
CHANGES = ("Deploy", "Activate", "Rollback")  # these log the live version before and after
LABEL_CHARS = 200  # a label is the caller's text: cut, so that lines stay short
ERROR_CHARS = 2000


def add_flag(parser) -> None:
    """`offerd serve --audit-log FILE` (or OFFERD_AUDIT_LOG; `parser` is offerd.cli's, which
    takes `env=`); the file is opened as the
    arguments are read, as argparse.FileType does, so a bad path stops the start at once."""
    parser.add_argument("--audit-log", type=open_log, env="OFFERD_AUDIT_LOG", metavar="FILE",
                        help="also append one JSON line per AdminService call to FILE (who, what, which version, "
                             "outcome); the server's log has them too")


def open_log(path: str) -> logging.Handler:
    """Send the audit lines to `path` too, as JSON lines, appended."""
    import argparse

    try:
        handler = _Appending(path)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot open the audit log {path}: {e.strerror}") from None
    handler.setFormatter(json_formatter())
    log.addHandler(handler)
    return handler


class _Appending(logging.Handler):
    """Each line one write() to a file opened O_APPEND, so that the workers' lines, which
    share the file (opened before they fork), never interleave."""

    def __init__(self, path: str):
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self.fd, (self.format(record) + "\n").encode("utf-8", "backslashreplace"))
        except Exception:
            self.handleError(record)


def audited(servicer):
    """`servicer` (an AdminService) with each of its methods writing an audit line."""
    for name in METHODS:
        method = getattr(servicer, name)
        setattr(servicer, name, (_stream if name == "Simulate" else _unary)(servicer, name, method))
    return servicer


def _unary(servicer, name: str, method):
    @functools.wraps(method, updated=())  # not its __dict__: guard.py refuses bad requests before this
    async def call(request, context):
        entry = _begin(servicer, name, request, context)
        try:
            reply = await method(request, context)
        except BaseException as e:
            _end(servicer, entry, context, e)
            raise
        _end(servicer, entry, context, None, reply)
        return reply
    return call


def _stream(servicer, name: str, method):
    @functools.wraps(method, updated=())  # not its __dict__: guard.py refuses bad requests before this
    async def call(request, context):
        entry = _begin(servicer, name, request, context)
        try:
            async for reply in method(request, context):
                yield reply
        except BaseException as e:  # GeneratorExit: the client went away
            _end(servicer, entry, context, e)
            raise
        _end(servicer, entry, context, None)
    return call


def _begin(servicer, name: str, request, context) -> dict:
    entry = {"method": name, "peer": context.peer(), "token": _token(servicer.token, context)}
    subject = _client(context)
    if subject:
        entry["client"] = subject
    label = getattr(request, "label", "")
    if label:
        entry["label"] = label[:LABEL_CHARS]
    if name in ("Activate", "Simulate") and request.hash:
        entry["hash"] = request.hash[:LABEL_CHARS]
    if name in CHANGES:
        entry["live_before"] = _live(servicer)
    return entry


def _end(servicer, entry: dict, context, error: BaseException | None, reply=None) -> None:
    name = entry["method"]
    if reply is not None and getattr(reply, "hash", ""):
        entry["hash"] = reply.hash
    if name in CHANGES:
        entry["live_after"] = _live(servicer)
        if error is None and name != "Deploy" and entry["live_after"]:
            entry["label"] = _label(servicer, entry["live_after"])
    if isinstance(error, GeneratorExit):  # a stream the client left: its call is gone, and so is context
        entry["outcome"] = "CANCELLED"
        log.warning("%s", _text(entry), extra={"fields": entry})
        return
    code = context.code()  # set by an abort (mapped, _authorize): the status the caller got
    if error is None:
        entry["outcome"] = "OK"
    elif code is not None and code.name != "OK":
        entry["outcome"], entry["error"] = code.name, (context.details() or "")[:ERROR_CHARS]
    elif isinstance(error, asyncio.CancelledError):
        entry["outcome"] = "CANCELLED"
    else:
        entry["outcome"], entry["error"] = "INTERNAL", repr(error)[:ERROR_CHARS]
    log.log(logging.INFO if error is None else logging.WARNING, "%s", _text(entry), extra={"fields": entry})


def _text(e: dict) -> str:
    """The line in plain logs: hashes cut to 12 digits (the JSON has them whole). What a
    caller sent (a hash, a label, a certificate's subject, an error echoing its input) is
    escaped: a newline in it must not start a line of its own."""
    who = f"{_plain(e['peer'])}, token {e['token']}" + (f", client {_plain(e['client'])}" if "client" in e else "")
    parts = [f"{e['method']} by {who}"]
    if "label" in e:
        parts.append(f"label {e['label']!r}")
    if "hash" in e:
        parts.append(f"version {_plain(e['hash'][:12])}")
    if "live_before" in e:
        parts.append(f"live {(e['live_before'] or 'none')[:12]} -> {(e['live_after'] or 'none')[:12]}")
    outcome = e["outcome"] + (f" ({_plain(e['error'])})" if e.get("error") else "")
    return ": ".join([", ".join(parts), outcome])


def _plain(text: str) -> str:
    """`text` with what is not printable (newlines, escapes) written as Python escapes."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _token(token: str | None, context) -> str:
    """valid, wrong, missing, or not required (the server has no admin token)."""
    if token is None:
        return "not required"
    sent = dict(context.invocation_metadata()).get("authorization")
    if sent is None:
        return "missing"
    if isinstance(sent, str) and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return "valid"
    return "wrong"


def _client(context) -> str:
    """The client certificate's subject under mutual TLS (its common name if that is all
    gRPC gives); empty without one."""
    auth = context.auth_context()
    for key in ("x509_subject", "x509_common_name"):
        if auth.get(key):
            return auth[key][0].decode("utf-8", "replace")
    return ""


def _live(servicer) -> str | None:
    try:
        return servicer.store.live_hash()
    except Exception:  # the audit never fails a call; the call itself says what is wrong
        return None


def _label(servicer, digest: str) -> str:
    try:
        return next((v["label"] for v in servicer.store.versions() if v["hash"] == digest), "")[:LABEL_CHARS]
    except Exception:
        return ""
