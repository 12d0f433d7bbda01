"""A minimal LSP client over a subprocess's stdin/stdout, for tests and benchmarks.

Takes: a command that starts a language server (`cnnspec lsp`). Returns: a
`Client` that sends requests and notifications as Content-Length framed JSON-RPC
and collects what comes back on a reader thread: `request` waits for its response,
`wait_for` for a notification (e.g. `textDocument/publishDiagnostics`). Plain JSON
dicts in and out, so it checks the server's wire format, not pygls's types.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path


class Client:
    def __init__(self, command: list[str], cwd: str | None = None, env=None):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        cwd=cwd, env=env)
        self._next_id = 0
        self._responses: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.notifications: queue.Queue = queue.Queue()  # (arrival time, message)
        self.stderr: list[bytes] = []  # drained, so a chatty server never blocks
        for target in (self._read, self._drain_stderr):
            threading.Thread(target=target, daemon=True).start()

    # ------------------------------------------------------------ wire

    def _send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        with self._lock:
            self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.process.stdin.flush()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = None
            while True:
                header = stream.readline()
                if not header:
                    return  # the server closed stdout
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(stream.read(length))
            arrived = time.perf_counter()
            if "id" in message and "method" not in message:
                self._queue(message["id"]).put((arrived, message))
            elif "id" in message:  # a request from the server: answer it blankly
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            else:
                self.notifications.put((arrived, message))

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    def _queue(self, key: int) -> queue.Queue:
        with self._lock:
            return self._responses.setdefault(key, queue.Queue())

    # ------------------------------------------------------------ messages

    def notify(self, method: str, params: dict | None = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params or {}})

    def send_request(self, method: str, params: dict | None = None) -> int:
        """Send a request without waiting; `response(id)` collects the answer."""
        with self._lock:
            self._next_id += 1
            key = self._next_id
        self._queue(key)
        self._send({"jsonrpc": "2.0", "id": key, "method": method, "params": params or {}})
        return key

    def response(self, key: int, timeout: float = 10.0) -> tuple[float, dict]:
        """(arrival time, response message) of request `key`."""
        return self._queue(key).get(timeout=timeout)

    def request(self, method: str, params: dict | None = None, timeout: float = 10.0):
        """The result of a request; raises RuntimeError with the server's error."""
        _, message = self.response(self.send_request(method, params), timeout)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message.get("result")

    def wait_for(self, method: str, predicate=lambda params: True,
                 timeout: float = 10.0) -> tuple[float, dict]:
        """(arrival time, params) of the next notification `method` that satisfies
        `predicate`; the ones skipped on the way are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            try:
                arrived, message = self.notifications.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"no {method} within {timeout} s") from None
            if message.get("method") == method and predicate(message.get("params")):
                return arrived, message["params"]

    def drain(self) -> None:
        """Forget the notifications received so far."""
        while not self.notifications.empty():
            self.notifications.get_nowait()

    # ------------------------------------------------------------ life cycle

    def initialize(self, root: str | Path) -> dict:
        result = self.request("initialize", {
            "processId": None, "rootUri": Path(root).resolve().as_uri(),
            "capabilities": {"textDocument": {
                "hover": {"contentFormat": ["markdown", "plaintext"]},
                "documentSymbol": {"hierarchicalDocumentSymbolSupport": True},
                "publishDiagnostics": {"relatedInformation": True}}}}, timeout=30)
        self.notify("initialized")
        return result

    def open(self, path: str | Path, text: str | None = None, version: int = 1) -> str:
        path = Path(path).resolve()
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "cnn", "version": version,
            "text": path.read_text() if text is None else text}})
        return uri

    def change(self, uri: str, text: str, version: int) -> None:
        """Replace the whole document (a full-text change)."""
        self.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"text": text}]})

    def shutdown(self, timeout: float = 10.0) -> int:
        """shutdown, exit, and the server's exit status."""
        self.request("shutdown", timeout=timeout)
        self.notify("exit")
        self.process.stdin.close()
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.process.stdout.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
