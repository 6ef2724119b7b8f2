"""Headless Chromium driven through its DevTools protocol, with the standard library only.

The system's `chromium` (Debian's package; .ci/run installs it) is started with --remote-debugging-port; one page
target is spoken to over a WebSocket (RFC 6455, the small client below). Used by tests/integration/
test_report_html.py and eval/bench_report_html.py:

    with Chromium() as browser:
        browser.open(path)                        # a local file; waits for document.body.dataset.ready
        browser.eval("document.title")            # Runtime.evaluate, the value returned by value
        browser.screenshot(png_path, full=False)  # Page.captureScreenshot
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser's executable ($CHROMIUM, else the first of NAMES on PATH), or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    return next((p for p in map(shutil.which, NAMES) if p), None)


class WebSocket:
    """A minimal client: text frames out (masked), text frames in (fragments joined); pings answered."""

    def __init__(self, url: str, timeout: float = 60.0):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError(f"not a ws:// URL: {url}")
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the browser closed the connection during the handshake")
            head += chunk
        status, _, self.buf = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {status[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8"))

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("the browser closed the WebSocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x1, 0x0, 0x2):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode("utf-8")

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Chromium:
    """One headless browser with one page; a context manager that kills the browser it started."""

    def __init__(self, width: int = 1400, height: int = 900, timeout: float = 60.0):
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("no chromium on PATH (apt-get install -y chromium, or set $CHROMIUM)")
        self.profile = tempfile.mkdtemp(prefix="rag-chromium-")
        self.timeout = timeout
        args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--allow-file-access-from-files",
                "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._port()
        page = self._page_target(port)
        self.ws = WebSocket(page["webSocketDebuggerUrl"], timeout=timeout)
        self._id = 0
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _port(self) -> int:
        """The DevTools port, from the DevToolsActivePort file the browser writes into its profile."""
        marker = Path(self.profile) / "DevToolsActivePort"
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            if marker.exists():
                first = marker.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def _page_target(self, port: int) -> dict:
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as f:
                    pages = [t for t in json.loads(f.read()) if t.get("type") == "page"]
                if pages:
                    return pages[0]
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("chromium has no page target")

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events that arrive meanwhile are kept in .events)."""
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited); a thrown error raises here."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JavaScript error: {res['exceptionDetails'].get('exception', {}).get('description') or res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def open(self, path: str | Path, ready: str = "document.body && document.body.dataset.ready === '1'") -> float:
        """Load a local file and wait until `ready` holds; returns the wall seconds from navigation to ready."""
        t0 = time.perf_counter()
        self.call("Page.navigate", url=Path(path).resolve().as_uri())
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            try:
                if self.eval(ready):
                    return time.perf_counter() - t0
            except RuntimeError:  # the old document is being replaced
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{path} did not become ready: {ready}")

    def screenshot(self, path: str | Path, full: bool = False) -> Path:
        params = {"format": "png"}
        if full:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - best effort while shutting the browser down
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
