"""A tiny OpenAI-compatible HTTP server for tests: the fake reader's answers behind /v1/completions.

    FakeServer(**behaviour) as srv:   srv.url -> "http://127.0.0.1:<port>/v1"
    srv.requests                      [(method, path, json body, headers)] in arrival order
    srv.peak                          the most completion requests handled at the same time

Behaviour: models (ids listed by /v1/models), tokenize ("vllm", "llamacpp", "extras" or None), key (the
Bearer token it demands), fail ({path: [status, ...]} answered in turn before succeeding; "*" = every path),
retry_after (header sent with 429/5xx), delay (seconds per completion), logprobs ("aligned", "shifted" as
llama-cpp-python's server does for models without BOS, or "reject"), owned_by, hold (completions wait, up
to 2 s, until this many have been in flight together: with more allowed, more would pile up).

Its "tokens" are whitespace-led words (" Paris"), each with log-probability -len(word)/10; a prompt's
tokenize count is the number of such words plus one (a BOS).
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rag.readers.fake import FakeReader

_WORD = re.compile(r"\s*\S+")


def words(text: str) -> list[tuple[int, str]]:
    """(offset, token) pairs: each token is a word with the whitespace before it."""
    return [(m.start(), m.group()) for m in _WORD.finditer(text)]


def word_logprob(token: str) -> float:
    return -len(token.strip()) / 10


class FakeServer:
    def __init__(self, models=("fake-model",), tokenize="vllm", key=None, fail=None, retry_after=None, delay=0.0,
                 logprobs="aligned", owned_by="vllm", known=None, answer_suffix="\nQ: next", hold=0):
        self.models, self.tokenize, self.key, self.retry_after, self.delay = list(models), tokenize, key, retry_after, delay
        self.fail = {k: list(v) for k, v in (fail or {}).items()}
        self.logprobs, self.owned_by, self.answer_suffix, self.hold = logprobs, owned_by, answer_suffix, hold
        self.reader = FakeReader(known=known)
        self.requests: list[tuple[str, str, dict | None, dict]] = []
        self.peak = 0
        self._active = 0
        self._lock = threading.Condition()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self, method: str = "POST") -> list[str]:
        return [p for m, p, _, _ in self.requests if m == method]

    # -- answers ---------------------------------------------------------------------------------------------

    def _completion(self, body: dict) -> dict:
        prompt = body["prompt"]
        if body.get("echo"):
            return self._echo(body)
        text = self.reader._answer(prompt)
        out = text + self.answer_suffix  # servers stop at "\n"; this one does not, so first_line must
        return {"choices": [{"text": out, "index": 0, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(words(prompt)) + 1, "completion_tokens": len(words(text))}}

    def _echo(self, body: dict) -> dict | None:
        if self.logprobs == "reject":
            return None
        prompt = body["prompt"]
        toks = words(prompt)
        gen = " x"
        offsets = [o for o, _ in toks]
        tokens = [t for _, t in toks]
        values: list = [word_logprob(t) for t in tokens]
        tops: list = [{t: word_logprob(t)} for t in tokens]
        values[0] = tops[0] = None
        if self.logprobs == "aligned":
            offsets.append(len(prompt))
            tokens.append(gen)
            values.append(-0.1)
            tops.append({gen: -0.1, " y": -2.0})
        # "shifted": no entry for the generated token, as llama-cpp-python's server without a BOS token
        return {"choices": [{"text": prompt + gen, "index": 0, "finish_reason": "length",
                             "logprobs": {"text_offset": offsets, "token_logprobs": values, "tokens": tokens,
                                          "top_logprobs": tops}}],
                "usage": {"prompt_tokens": len(toks) + 1, "completion_tokens": 1}}

    def _chat(self, body: dict) -> dict:
        text = self.reader._answer(body["messages"][-1]["content"] + "\nA:")  # the final user turn
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1}}

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, data, headers: dict | None = None):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _serve(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path
                with srv._lock:
                    srv.requests.append((method, path, body, dict(self.headers)))
                    queue = srv.fail.get(path) or srv.fail.get("*")
                    status = queue.pop(0) if queue else None
                if status is not None:
                    extra = {"Retry-After": str(srv.retry_after)} if srv.retry_after is not None else {}
                    return self._send(status, {"error": {"message": f"injected failure {status}", "type": "test"}}, extra)
                if srv.key is not None and self.headers.get("Authorization") != f"Bearer {srv.key}":
                    return self._send(401, {"error": {"message": "Invalid API key", "type": "auth"}})
                if method == "GET" and path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": srv.owned_by, "max_model_len": 4096} for m in srv.models]})
                if method != "POST":
                    return self._send(404, {"detail": "Not Found"})
                if path in ("/tokenize", "/extras/tokenize"):
                    field = {"vllm": ("/tokenize", "prompt"), "llamacpp": ("/tokenize", "content"),
                             "extras": ("/extras/tokenize", "input")}.get(srv.tokenize)
                    if field is None or field[0] != path:
                        return self._send(404, {"detail": "Not Found"})
                    text = body.get(field[1])
                    if text is None:
                        return self._send(400, {"error": {"message": f"missing {field[1]}"}})
                    return self._send(200, {"tokens": list(range(len(words(text)) + 1))})
                if path in ("/v1/completions", "/v1/chat/completions"):
                    model = body.get("model")
                    if model not in srv.models:
                        return self._send(404, {"error": {"message": f"The model `{model}` does not exist.",
                                                          "type": "NotFoundError"}})
                    with srv._lock:
                        srv._active += 1
                        srv.peak = max(srv.peak, srv._active)
                        srv._lock.notify_all()
                        srv._lock.wait_for(lambda: srv.peak >= srv.hold, timeout=2.0)
                    try:
                        time.sleep(srv.delay)
                        data = srv._chat(body) if path.endswith("chat/completions") else srv._completion(body)
                    finally:
                        with srv._lock:
                            srv._active -= 1
                    if data is None:
                        return self._send(400, {"error": {"message": "echo is not supported with logprobs"}})
                    return self._send(200, data)
                return self._send(404, {"detail": "Not Found"})

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        return Handler


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
