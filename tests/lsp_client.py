"""A small LSP client for tests and benchmarks: `offerd lsp` as a subprocess, JSON-RPC messages
with Content-Length framing over its stdin and stdout, read by a thread."""
from __future__ import annotations

import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time


def uri(path) -> str:
    return pathlib.Path(path).resolve().as_uri()


class Client:
    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "offerd.cli", "lsp", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})})
        self.inbox: queue.Queue = queue.Queue()
        self.diagnostics: dict[str, dict] = {}  # uri → the last publishDiagnostics params
        self.log: list[tuple[float, dict]] = []  # (arrival, publishDiagnostics params), in order
        self.other: list[dict] = []  # other notifications and requests from the server
        self._id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    self.inbox.put(None)
                    return
                line = line.strip()
                if not line:
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            self.inbox.put(json.loads(out.read(length)))

    def send(self, *messages: dict) -> None:
        """Messages in one write: the server finds them all waiting."""
        data = b""
        for message in messages:
            body = json.dumps({"jsonrpc": "2.0", **message}).encode()
            data += b"Content-Length: %d\r\n\r\n" % len(body) + body
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict | None = None) -> None:
        self.send({"method": method, "params": params or {}})

    def request(self, method: str, params: dict | None = None, timeout: float = 30):
        self._id += 1
        wanted = self._id
        self.send({"id": wanted, "method": method, "params": params or {}})
        found = self.pump(lambda m: m.get("id") == wanted and "method" not in m, timeout)
        assert "error" not in found, found
        return found["result"]

    def pump(self, stop, timeout: float = 30) -> dict:
        """Read messages until `stop(message)` holds for one; return it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no answer within {timeout} s") from None
            if m is None:
                raise AssertionError("the server closed its output: " + self.proc.stderr.read().decode())
            if m.get("method") == "textDocument/publishDiagnostics":
                self.diagnostics[m["params"]["uri"]] = m["params"]
                self.log.append((time.perf_counter(), m["params"]))
            elif "method" in m:
                self.other.append(m)
            if stop(m):
                return m

    def wait_diagnostics(self, doc: str, version: int | None = None, timeout: float = 30) -> list[dict]:
        """The diagnostics of `doc` once published for this version (any, when None)."""
        def done(m):
            p = m.get("params", {})
            return m.get("method") == "textDocument/publishDiagnostics" and p["uri"] == doc and (
                version is None or p.get("version") == version)

        current = self.diagnostics.get(doc)
        if current is not None and (version is None or current.get("version") == version):
            return current["diagnostics"]
        return self.pump(done, timeout)["params"]["diagnostics"]

    def initialize(self, root) -> dict:
        result = self.request("initialize", {"processId": os.getpid(), "rootUri": uri(root),
                                             "capabilities": {"general": {"positionEncodings": ["utf-16"]}}})
        self.notify("initialized")
        return result

    def open(self, path, version: int = 1) -> str:
        path = pathlib.Path(path)
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri(path), "languageId": "odl",
                                                              "version": version, "text": path.read_text()}})
        return uri(path)

    def replace(self, doc: str, version: int, text: str, send: bool = True) -> dict:
        """A whole-text change (sent, or only returned)."""
        message = {"method": "textDocument/didChange", "params": {"textDocument": {"uri": doc, "version": version},
                                                                  "contentChanges": [{"text": text}]}}
        if send:
            self.send(message)
        return message

    def stop(self, timeout: float = 10) -> int:
        self.request("shutdown")
        self.notify("exit")
        return self.proc.wait(timeout)
