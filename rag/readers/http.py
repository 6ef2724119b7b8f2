"""A small JSON-over-HTTP client for model servers: bounded retries with backoff, errors a user can act on.

    429, 5xx (but 501), connection errors, timeouts   retried up to `max_retries` times: exponential backoff
                                                      with jitter, or the server's Retry-After when it sends one
    other 4xx                                         ServerRequestError at once, naming the status and the
                                                      server's own message (a wrong model name, a bad key)
    still failing after the retries                   ServerUnavailableError naming the URL and the last error

Headers (which carry the API key) are never put into messages or logs; URLs are shown without user:password.
`httpx` is the optional extra `rag[openai]`, imported when a client is made.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rag.errors import BadInputError, RagError, require

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})  # 5xx that a retry can cure (not 501 Not Implemented)
MAX_RETRY_AFTER_S = 60.0  # a server asking for longer is waited for this long at most


class ServerRequestError(BadInputError):
    """The server refused the request (4xx): fixing the request (model name, key, parameters) is up to the user."""

    def __init__(self, message: str, status: int, server_message: str):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class ServerUnavailableError(RagError):
    """No usable answer after the retries: the server is down, unreachable or keeps failing."""

    def __init__(self, message: str, reason: str = "", refused: bool = False):
        super().__init__(message)
        self.reason = reason or message
        self.refused = refused  # nothing listened at the address (the last try's connection was refused)


def safe_url(url: str) -> str:
    """`url` without user:password@ and without a query string (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def server_message(body: bytes | str, limit: int = 500) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    msg: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg")
        elif isinstance(err, str):
            msg = err
        msg = msg or data.get("detail") or data.get("message")
    if msg is None:
        msg = text
    if not isinstance(msg, str):
        msg = json.dumps(msg)
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:  # an HTTP date: rare from model servers; fall back to the backoff
        return None


class JsonClient:
    """POST/GET JSON to `base_url` + path from many threads (one pooled httpx.Client is thread-safe)."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_connections: int = 8,
    ):
        httpx = require("httpx", "openai")
        if max_retries < 0 or backoff < 0 or timeout <= 0:
            raise BadInputError("max_retries and backoff must be >= 0 and timeout positive")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._httpx = httpx
        self._client = httpx.Client(
            headers=headers or {},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        # retried failures, for tests and logs: (what, delay slept)
        self.retries: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        retry: bool = True,
        abort: threading.Event | None = None,
        retry_refused: bool = True,
    ) -> Any:
        """The decoded JSON answer. `retry=False`: one try, and any failure raised (probing optional endpoints);
        `retry_refused=False`: a refused connection is raised at once (nothing listens: retrying will not help
        at startup). `abort`, once set (another request of the batch failed for good), stops further retries."""
        httpx = self._httpx
        url = self.url(path)
        shown = f"{method} {safe_url(url)}"
        tries = 1 + (self.max_retries if retry else 0)
        last = ""
        refused = False
        made = 0
        for attempt in range(tries):
            made = attempt + 1
            wait: float | None = None
            refused = False
            try:
                resp = self._client.request(method, url, json=body)
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
            except httpx.TransportError as e:  # refused, reset, DNS, the server dying mid-answer
                last = _reason(e)
                refused = isinstance(e, httpx.ConnectError) and "refused" in str(e).lower()
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError:
                        raise ServerUnavailableError(f"{shown}: the answer is not JSON: {server_message(resp.content, 200)}") from None
                msg = server_message(resp.content)
                if resp.status_code not in RETRY_STATUS:
                    raise ServerRequestError(
                        f"{shown} answered HTTP {resp.status_code} {resp.reason_phrase}: {msg}", resp.status_code, msg
                    )
                last = f"HTTP {resp.status_code} {resp.reason_phrase}: {msg}"
                wait = _retry_after(resp.headers.get("retry-after"))
            if made >= tries or (abort is not None and abort.is_set()) or (refused and not retry_refused):
                break
            if wait is None:
                # full jitter around an exponential step, so many clients do not retry in lockstep
                wait = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.5)
            with self._lock:
                self.retries.append((last, wait))
            log.warning("%s: %s; retry %d of %d in %.1f s", shown, last, attempt + 1, tries - 1, wait)
            if abort is not None:
                if abort.wait(wait):
                    break
            else:
                time.sleep(wait)
        raise ServerUnavailableError(
            f"{shown}: {last}" + (f" (after {made} tries)" if made > 1 else "")
            + "; is the model server running and reachable at this address?",
            reason=last,
            refused=refused,
        )

    def close(self) -> None:
        self._client.close()


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    low = text.lower()
    if "refused" in low:
        return "connection refused (nothing listens at this address)"
    if "disconnected" in low or "reset" in low:
        return f"connection lost ({text})"
    return f"{type(e).__name__}: {text}"
