"""Reader backend "openai": any OpenAI-compatible server (llama.cpp's servers, vLLM, Ollama, hosted APIs).

    generate_batch  POST {base_url}/completions with the prompt the other backends build, one request per
                    prompt, at most `max_concurrency` (8) in flight, answers in prompt order; greedy
                    (temperature 0, top_p 1, a fixed seed), stop at "\\n", `max_tokens`
                    chat=True: POST {base_url}/chat/completions with the same few-shot prompt as chat turns
                    (`chat_messages`): the server's chat template is applied only when asked
    score_batch     POST {base_url}/completions with echo=true, logprobs=1, max_tokens=1 on prompt + continuation;
                    the continuation's tokens are those whose text offset is at or after the prompt's end
    count_tokens    the server's tokenize endpoint when it has one (vLLM POST /tokenize, llama.cpp's llama-server
                    POST /tokenize, llama-cpp-python POST /extras/tokenize), else the local `tokenizer` named by
                    the user (transformers), else an estimate: ceil(UTF-8 bytes / 3) + 1 (stated in the reader's name)

Greedy on llama.cpp servers also sends repeat_penalty 1.0: llama-cpp-python's server applies 1.1 unless told,
which changes greedy answers (the in-process backend uses 1.0). A model name the server does not list under
/models is an error at load (llama-cpp-python's server would silently answer with its default model).

The API key is read from the environment variable named by `api_key_env` (default OPENAI_API_KEY when set)
and only ever sent as an Authorization header; options, manifests, records and logs hold the variable's
name at most. There is deliberately no `api_key` option.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os
import threading
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from rag.errors import BadInputError, require
from rag.readers.base import (
    DEFAULT_N_CTX, READERS, Generation, Reader, Score, ScoringNotSupported, check_prompts, check_scoring, first_line,
)
from rag.readers.http import JsonClient, ServerRequestError, ServerUnavailableError, safe_url

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# chat mode: the chat template's tokens around each turn are not in the raw text that is counted
CHAT_TOKENS_PER_TURN = 8
CHAT_TOKENS_FIXED = 16
# owned_by in GET /models -> server family
_OWNERS = {"me": "llama-cpp-python", "llamacpp": "llama.cpp", "vllm": "vllm", "library": "ollama"}
# families whose greedy decoding needs repeat_penalty 1.0 spelled out (llama.cpp's sampler chain applies it)
_REPEAT_PENALTY = {"llama-cpp-python", "llama.cpp", "ollama"}
LOAD_OPTIONS = (
    "base_url", "api_key_env", "chat", "max_concurrency", "timeout", "max_retries", "backoff", "tokenizer",
    "n_ctx", "seed", "extra_body", "device",
)


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """A few-shot "Q: ... / A: ..." prompt as chat turns, each demonstration a user turn and an assistant turn.

    The prompt's blocks are separated by blank lines (rag.readers.prompts renders each on one line per
    passage / question): a block ending in an "A: <answer>" line is a demonstration (user: the block without
    that line; assistant: the answer); a block without one (the format's header, passages-first context)
    opens the next user turn; the last block ends in a bare "A:" and becomes the final user turn.
    """
    blocks = prompt.strip("\n").split("\n\n")
    messages: list[dict[str, str]] = []
    pending = ""
    for i, block in enumerate(blocks):
        lines = block.split("\n")
        last = lines[-1]
        if i == len(blocks) - 1:
            if last.strip() != "A:":
                raise BadInputError("chat mode needs prompts that end in a bare 'A:' line (the built-in Q:/A: formats)")
            messages.append({"role": "user", "content": pending + "\n".join(lines[:-1])})
        elif last.startswith("A:") and len(lines) > 1:
            messages.append({"role": "user", "content": pending + "\n".join(lines[:-1])})
            messages.append({"role": "assistant", "content": last[2:].strip()})
            pending = ""
        else:
            pending += block + "\n\n"
    return messages


def estimate_tokens(text: str) -> int:
    """A conservative token count without a tokenizer: English BPE averages ~4 bytes a token, this assumes 3."""
    return math.ceil(len(text.encode("utf-8")) / 3) + 1


def _root(base_url: str) -> str:
    """The server root that tokenize endpoints hang from: base_url without a trailing /v1."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInputError(f"base_url must be an http(s) URL such as http://127.0.0.1:8080/v1, got {safe_url(url)!r}")
    if not parts.path:  # the usual mistake: the server root instead of its OpenAI prefix
        url += "/v1"
    return url


@READERS.register("openai")
class OpenAIReader(Reader):
    def __init__(
        self,
        model: str | None,
        base_url: str,
        api_key_env: str | None = None,
        chat: bool = False,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        tokenizer: str | None = None,
        n_ctx: int | None = None,
        seed: int | None = 0,
        extra_body: dict | None = None,
    ):
        """Connects to the server at once: checks the model is served, finds n_ctx and how to count tokens."""
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise BadInputError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        if extra_body is not None and not isinstance(extra_body, dict):
            raise BadInputError(f"extra_body must be a mapping of extra request fields, got {extra_body!r}")
        self.base_url = _normalize_base_url(base_url)
        self.url = safe_url(self.base_url)
        self.chat = bool(chat)
        self.max_concurrency = max_concurrency
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        headers = {"Accept": "application/json"}
        key = _api_key(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = JsonClient(self.base_url, headers, timeout=timeout, max_retries=max_retries, backoff=backoff,
                                 max_connections=max_concurrency)
        self._pool = cf.ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="rag-openai")
        self._alignment: ScoringNotSupported | bool | None = None  # the first score_batch's probe, once
        self._probe_lock = threading.Lock()
        try:
            self.family, served = self._models()
            self.model = self._check_model(model, served)
            self.n_ctx = int(n_ctx or served.get(self.model) or self._props_n_ctx() or DEFAULT_N_CTX)
            if self.family in _REPEAT_PENALTY:
                self.extra_body = {"repeat_penalty": 1.0, **self.extra_body}
            self.token_counts, self._count = self._token_counter(tokenizer)
        except BaseException:
            self.close()
            raise
        log.info("openai reader: %s at %s (%s server), n_ctx %d, token counts: %s", self.model, self.url,
                 self.family, self.n_ctx, self.token_counts)
        # what the run manifest records (reader_info.name): where the answers came from and how prompts were fitted
        self.name = f"{self.model} via {self.url} ({'chat' if self.chat else 'completions'}; token counts: {self.token_counts})"
        from rag.readers.models import NAMED_MODELS

        if self.model in NAMED_MODELS:  # a server alias such as smollm2-135m keeps that model's prompt format
            self.prompt_format = NAMED_MODELS[self.model].prompt_format

    @classmethod
    def load(cls, model: str | None, **options) -> "OpenAIReader":
        """`model` is the server's model id (None or "": the one model it serves). Options: base_url (else
        $OPENAI_BASE_URL), api_key_env, chat, max_concurrency, timeout, max_retries, backoff, tokenizer, n_ctx,
        seed, extra_body (merged into every request)."""
        if "api_key" in options:
            raise BadInputError("the openai backend takes no api_key option (it would end up in configs and run "
                                "manifests): put the key in an environment variable and name it with api_key_env")
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown:
            raise BadInputError(f"unknown option(s) for the openai backend: {', '.join(unknown)}; "
                                f"choose from: {', '.join(LOAD_OPTIONS)}")
        options.pop("device", None)  # the server decides where the model runs
        base_url = options.pop("base_url", None) or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BadInputError("the openai backend needs the server's address: --base-url URL (reader.options.base_url "
                                "in an eval config) or $OPENAI_BASE_URL, e.g. http://127.0.0.1:8080/v1")
        # null leaves a setting at its default, except seed: null sends no seed at all
        return cls(model or None, base_url, **{k: v for k, v in options.items() if v is not None or k == "seed"})

    # -- connecting ------------------------------------------------------------------------------------------

    def _models(self) -> tuple[str, dict[str, int | None]]:
        """(server family, {model id: its context size if listed}); ({}, "unknown") when /models is missing."""
        try:
            # a refused connection fails at once at startup (a wrong --base-url, a server not started); a 5xx, a
            # reset or a timeout gets the usual retries, as every request of a run does
            data = self.client.request("GET", "models", retry_refused=False)
        except ServerUnavailableError as e:
            if not e.refused:
                raise
            raise ServerUnavailableError(
                f"cannot connect to the model server at {self.url}: {e.reason}; start it (README: \"Using your own "
                f"model server\") or fix --base-url", reason=e.reason, refused=True) from None
        except ServerRequestError as e:
            if e.status in (404, 405):
                log.info("%s has no /models endpoint; the model name is not checked", self.url)
                return "unknown", {}
            raise
        entries = data.get("data", []) if isinstance(data, dict) else []
        served: dict[str, int | None] = {}
        family = "unknown"
        for m in entries:
            if isinstance(m, dict) and "id" in m:
                served[str(m["id"])] = m.get("max_model_len")
                family = _OWNERS.get(str(m.get("owned_by", "")), family)
        return family, served

    def _check_model(self, model: str | None, served: dict) -> str:
        if not served:
            if not model:
                raise BadInputError(f"{self.url} does not list its models: name the model (--model / reader.model)")
            return model
        if not model:
            if len(served) == 1:
                return next(iter(served))
            raise BadInputError(f"{self.url} serves several models; name one with --model: {', '.join(sorted(served))}")
        if model not in served:
            raise BadInputError(f"model {model!r} is not served at {self.url}; it serves: {', '.join(sorted(served))}")
        return model

    def _props_n_ctx(self) -> int | None:
        if self.family != "llama.cpp":
            return None
        try:  # llama.cpp's llama-server reports its -c here
            props = self.client.request("GET", f"{_root(self.base_url)}/props", retry=False)
        except (ServerRequestError, ServerUnavailableError):
            return None
        gen = props.get("default_generation_settings", {}) if isinstance(props, dict) else {}
        n = gen.get("n_ctx") or props.get("n_ctx")
        return int(n) if n else None

    def _token_counter(self, tokenizer: str | None) -> tuple[str, Callable[[str], int]]:
        """(how counts are made, text -> count): the first tokenize endpoint that answers, else the local tokenizer,
        else the estimate."""
        root = _root(self.base_url)
        probes: list[tuple[str, str, Callable[[str], dict], Callable[[Any], int | None]]] = [
            ("server POST /tokenize (vLLM)", f"{root}/tokenize",
             lambda t: {"model": self.model, "prompt": t, "add_special_tokens": True}, _tokens_or_count),
            ("server POST /tokenize (llama.cpp)", f"{root}/tokenize",
             lambda t: {"content": t, "add_special": True}, _tokens_or_count),
            ("server POST /extras/tokenize (llama-cpp-python)", f"{root}/extras/tokenize",
             lambda t: {"input": t, "model": self.model}, _tokens_or_count),
        ]
        probe_text = "Q: who wrote hamlet\nA:"
        for how, url, body, parse in probes:
            try:
                n = parse(self.client.request("POST", url, body(probe_text), retry=False))
            except (ServerRequestError, ServerUnavailableError):
                continue
            if n:  # a server that answers the wrong request shape with no tokens does not count
                if "llama.cpp" in how and self.family == "unknown":
                    self.family = "llama.cpp"
                elif "llama-cpp-python" in how and self.family == "unknown":
                    self.family = "llama-cpp-python"
                if tokenizer:
                    log.info("tokenizer %r not used: the server counts tokens itself", tokenizer)

                def count(text: str, url=url, body=body, parse=parse) -> int:
                    n = parse(self.client.request("POST", url, body(text)))
                    if n is None:
                        raise ServerUnavailableError(f"POST {safe_url(url)}: the answer has no tokens")
                    return n

                return how, count
        if tokenizer:
            transformers = require("transformers", "transformers")
            try:
                tok = transformers.AutoTokenizer.from_pretrained(tokenizer)
            except OSError as e:
                raise BadInputError(f"cannot load tokenizer {tokenizer!r} ({e}); pass a local tokenizer folder") from e
            return f"local tokenizer {tokenizer}", lambda t: len(tok(t, add_special_tokens=True)["input_ids"])
        log.warning("%s has no tokenize endpoint and no tokenizer option was given: prompts are fitted with an "
                    "estimate (UTF-8 bytes / 3 + 1 tokens, conservative); set reader.options.tokenizer for exact counts",
                    self.url)
        return "estimate ceil(UTF-8 bytes / 3) + 1", estimate_tokens

    # -- the Reader interface ----------------------------------------------------------------------------------

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counts = self._map(self._count, list(texts))
        if self.chat:
            # a whole prompt (it ends in "A:") becomes chat turns: add the template's tokens around each
            counts = [n + CHAT_TOKENS_FIXED + CHAT_TOKENS_PER_TURN * (2 * t.count("\nA: ") + 1) if t.endswith("A:") else n
                      for n, t in zip(counts, texts)]
        return counts

    def _body(self, max_tokens: int) -> dict:
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "n": 1,
                                "stream": False}
        if self.seed is not None:
            body["seed"] = self.seed
        return {**body, **self.extra_body}

    def _generate_one(self, prompt: str, max_new_tokens: int, abort: threading.Event) -> Generation:
        body = self._body(max_new_tokens)
        body["stop"] = ["\n"]
        if self.chat:
            body["messages"] = chat_messages(prompt)
            data = self.client.request("POST", "chat/completions", body, abort=abort)
            text = (_choice(data, self.url).get("message") or {}).get("content") or ""
        else:
            body["prompt"] = prompt
            data = self.client.request("POST", "completions", body, abort=abort)
            text = _choice(data, self.url).get("text") or ""
        usage = data.get("usage") or {}
        return Generation(first_line(text), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        return self._map(lambda p, abort: self._generate_one(p, max_new_tokens, abort), list(prompts), with_abort=True)

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        check_scoring(prompts, continuations)
        if self.chat:
            raise ScoringNotSupported("scoring continuations needs the completions endpoint; it is not available with chat=true")
        self._probe_alignment()
        return self._map(lambda pc, abort: self._score_one(pc[0], pc[1], abort), list(zip(prompts, continuations)),
                         with_abort=True)

    def _probe_alignment(self) -> None:
        """Once: score a text after which every language model writes something, so a server whose echo
        log-probabilities sit one token off is caught even when a real prompt's next token is end-of-text."""
        with self._probe_lock:
            if self._alignment is None:
                try:
                    self._score_one("1, 2, 3, 4, 5, 6, 7, 8,", " 9", threading.Event())
                    self._alignment = True
                except ScoringNotSupported as e:
                    self._alignment = e
        if isinstance(self._alignment, ScoringNotSupported):
            raise ScoringNotSupported(str(self._alignment))

    def _score_one(self, prompt: str, continuation: str, abort: threading.Event) -> Score:
        text = prompt + continuation
        body = {**self._body(1), "prompt": text, "echo": True, "logprobs": 1}
        try:
            data = self.client.request("POST", "completions", body, abort=abort)
        except ServerRequestError as e:
            raise ScoringNotSupported(f"scoring is not supported by this server ({self.url}): HTTP {e.status}: "
                                      f"{e.server_message}") from None
        choice = _choice(data, self.url)
        lp = choice.get("logprobs") or {}
        offsets, values, tokens = lp.get("text_offset"), lp.get("token_logprobs"), lp.get("tokens")
        if not offsets or values is None or tokens is None:
            raise ScoringNotSupported(f"scoring is not supported by this server ({self.url}): it returned no prompt "
                                      f"log-probabilities for echo=true, logprobs=1")
        _check_alignment(choice, text, lp, self.url)
        start, end = len(prompt), len(text)
        picked = [(tok, v) for off, tok, v in zip(offsets, tokens, values) if start <= off < end]
        if any(v is None for _, v in picked):
            raise ScoringNotSupported(f"scoring is not supported by this server ({self.url}): a continuation token has "
                                      f"no log-probability")
        return Score(float(sum(v for _, v in picked)), tuple(float(v) for _, v in picked), tuple(t for t, _ in picked))

    def _map(self, fn, items: list, with_abort: bool = False) -> list:
        """fn over items on the pool, results in order; the first failure stops the others' retries and is raised."""
        if not items:
            return []
        abort = threading.Event()
        if len(items) == 1:  # fit_prompt counts one text at a time: no hop through the pool
            return [fn(items[0], abort) if with_abort else fn(items[0])]
        futures = [self._pool.submit(fn, x, abort) if with_abort else self._pool.submit(fn, x) for x in items]
        try:
            cf.wait(futures, return_when=cf.FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C: requests in flight finish in the background, none is retried or started
            abort.set()
            for f in futures:
                f.cancel()
            raise
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failed:
            abort.set()
            for f in futures:
                f.cancel()
            cf.wait(futures)
            raise failed[0].exception()
        return [f.result() for f in futures]

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None


def _api_key(env: str | None) -> str | None:
    if env:
        if not isinstance(env, str) or not env.replace("_", "").isalnum():
            raise BadInputError(f"api_key_env must name an environment variable (e.g. OPENAI_API_KEY), got {env!r}")
        key = os.environ.get(env)
        if not key:
            raise BadInputError(f"api_key_env names ${env}, which is not set (or empty) in this environment")
        return key
    return os.environ.get(DEFAULT_KEY_ENV) or None


def _tokens_or_count(data: Any) -> int | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("tokens"), list):
        return len(data["tokens"])
    if isinstance(data.get("count"), int):
        return data["count"]
    return None


def _choice(data: Any, url: str) -> dict:
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise ServerUnavailableError(f"{url}: the answer has no choices: {str(data)[:200]}") from None
    return choice if isinstance(choice, dict) else {}


def _check_alignment(choice: dict, sent: str, lp: dict, url: str) -> None:
    """Refuse prompt log-probabilities that sit one token off.

    The one greedy token generated after the echoed text must have an entry of its own, and, being greedy, the
    highest log-probability among its alternatives. llama-cpp-python's server (0.3.x) with a model that adds no
    BOS token (SmolLM2, Qwen2.5) returns, for each token, the log-probability of that token under the
    distribution *after* it, and no entry for the generated token: detected here instead of returning wrong numbers.
    """
    generated = (choice.get("text") or "")[len(sent):] if (choice.get("text") or "").startswith(sent) else ""
    offsets, values, tops = lp["text_offset"], lp["token_logprobs"], lp.get("top_logprobs") or []
    after = [i for i, off in enumerate(offsets) if off >= len(sent)]
    misaligned = bool(generated) and not after
    if after and len(tops) > after[0] and isinstance(tops[after[0]], dict) and values[after[0]] is not None:
        best = max(tops[after[0]].values())
        misaligned = misaligned or values[after[0]] < best - 1e-3
    if misaligned:
        raise ScoringNotSupported(
            f"scoring is not supported by this server ({url}): its echo log-probabilities are shifted by one token "
            f"(the greedy next token is not the most likely at its own position; llama-cpp-python's server does this "
            f"for models without a BOS token). Use a server with correct prompt log-probabilities (vLLM) or the "
            f"vllm backend"
        )
