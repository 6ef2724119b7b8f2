"""llama.cpp reader (llama-cpp-python): GGUF models, the fast default on CPU.

One `Llama` instance per reader. Prompts run one after another: llama-cpp-python keeps the previous
prompt's tokens in its KV cache and evaluates only what follows the longest common prefix, so the
few-shot demonstrations that open every prompt of a run are computed once.

Speed on CPU: llama.cpp can repack Q4_0 / IQ4_NL / Q8_0 weights into interleaved blocks with GEMM kernels
("extra buffer types"); `quant="q4_0"` re-quantizes a GGUF once (cached) into that layout. Extra buffers
are on by default for such files (by name: q4_0, q8_0, iq4_nl) when the llama.cpp build has them and no AMX
kernels (its AMX buffers crash llama-cpp-python 0.3.x on AMX VMs; scripts/install.sh builds without them).
For the shipped Q4_K_M files repacking was measured slower here (prefill ~150 vs ~165-180 tokens/s), so it stays off.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError, require
from rag.readers.base import (DEFAULT_N_CTX, READERS, Generation, Reader, Score, check_golds, check_prompts, check_scoring,
                              first_line, gold_continuation, n_cores, scored_aliases, with_golds)
from rag.readers.kv_prefix import common_prefix_len
from rag.readers.models import resolve_gguf

log = logging.getLogger(__name__)


def gpu_offload_available() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (a CUDA/Metal/Vulkan build with a device)."""
    llama_cpp = require("llama_cpp", "readers")
    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # pragma: no cover - very old bindings
        return False


_REPACKED_NAME = re.compile(r"(?i)(^|[-_.])(q4_0|q8_0|iq4_nl)([-_.]|$)")


def extra_buffers_pay_off(path: str | Path) -> bool:
    """Whether a GGUF's weights are of a type whose repacked kernels were measured faster (by file name)."""
    return bool(_REPACKED_NAME.search(Path(path).stem))


def extra_buffers_safe() -> bool:
    """Whether this llama.cpp build repacks weights and has no AMX kernels (whose buffers crash 0.3.x here)."""
    llama_cpp = require("llama_cpp", "readers")
    info = llama_cpp.llama_print_system_info()
    return b"REPACK = 1" in info and b"AMX_INT8 = 1" not in info


# quant name -> llama_cpp ftype constant; the layouts llama.cpp's CPU backend repacks for GEMM kernels
QUANTS = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


def requantized(path: str | Path, quant: str, cache: Path | None = None) -> Path:
    """A cached copy of the GGUF `path` with its weights re-quantized to `quant` (made once, atomically).

    Re-quantizing an already quantized file (e.g. Q4_K_M -> Q4_0) costs some accuracy: measure it
    (eval/results/readers.md) before making it a default. The cache key covers the source's path, size and
    mtime, so a replaced source file is re-quantized.
    """
    llama_cpp = require("llama_cpp", "readers")
    from rag.artifacts import write_json_atomic
    from rag.readers.models import cache_dir

    if quant not in QUANTS:
        raise BadInputError(f"unknown quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    src = Path(path).resolve()
    st = src.stat()
    key = hashlib.sha256(f"{src}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = (cache or cache_dir()) / "requantized"
    dest = folder / f"{src.stem}-{key}-{quant}.gguf"
    if dest.exists():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTS[quant])
    params.allow_requantize = True
    log.warning("re-quantizing %s to %s (once; cached at %s)", src.name, quant, dest)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise BadInputError(f"llama.cpp could not re-quantize {src} to {quant} (code {rc})")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(dest.with_suffix(".json"), {"source": str(src), "source_size": st.st_size, "quant": quant,
                                                   "llama_cpp_python": getattr(llama_cpp, "__version__", "?")})
    return dest


@contextlib.contextmanager
def _model_params(**fields):
    """Set llama_model_params fields that `Llama(...)` has no argument for, while it is constructed."""
    low = require("llama_cpp.llama_cpp", "readers")
    orig = low.llama_model_default_params

    def patched():
        params = orig()
        for k, v in fields.items():
            if hasattr(params, k):
                setattr(params, k, v)
        return params

    low.llama_model_default_params = patched
    try:
        yield
    finally:
        low.llama_model_default_params = orig


@READERS.register("llama-cpp")
class LlamaCppReader(Reader):
    def __init__(
        self,
        path: str | Path,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        device: str = "auto",
        n_batch: int = 512,
        name: str | None = None,
        extra_buffers: bool | str = "auto",
    ):
        """`extra_buffers` enables llama.cpp's extra CPU weight layouts (repacked, AMX); "auto": for Q4_0 /
        Q8_0 / IQ4_NL files when the build has them and no AMX kernels, whose buffers make
        llama-cpp-python 0.3.36 segfault on AMX VMs."""
        llama_cpp = require("llama_cpp", "readers")
        if extra_buffers == "auto":
            extra_buffers = extra_buffers_pay_off(path) and extra_buffers_safe()
        elif not isinstance(extra_buffers, bool):
            raise BadInputError(f"extra_buffers must be true, false or 'auto', got {extra_buffers!r}")
        if device not in ("auto", "cpu", "cuda", "gpu"):
            raise BadInputError(f"device must be auto, cpu or cuda, got {device!r}")
        offload = device != "cpu" and gpu_offload_available()
        if device in ("cuda", "gpu") and not offload:
            raise BadInputError("device 'cuda' asked for, but this llama-cpp-python build has no GPU support")
        threads = n_threads or n_cores()
        self.path = Path(path)
        self.name = name or self.path.name
        self.device = "cuda" if offload else "cpu"
        with _model_params(use_extra_bufts=extra_buffers):
            self.llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=min(n_batch, n_ctx),
                n_gpu_layers=-1 if offload else 0,
                logits_all=False,
                verbose=False,
            )
        self.extra_buffers = extra_buffers
        self.n_ctx = self.llm.n_ctx()
        self.n_params = int(llama_cpp.llama_model_n_params(self.llm.model))
        self.n_embd = self.llm.n_embd()
        self.n_vocab = self.llm.n_vocab()

    @classmethod
    def load(cls, model: str, n_ctx: int | None = None, quant: str | None = None, **options) -> "LlamaCppReader":
        """A named model or GGUF path; `quant` ("q4_0", "q8_0") runs a re-quantized cached copy instead."""
        path, named = resolve_gguf(model)
        n_ctx = n_ctx or (named.n_ctx if named else DEFAULT_N_CTX)
        name = named.name if named else None
        if quant:
            path = requantized(path, quant)
            name = f"{name or Path(model).stem}@{quant}"
        reader = cls(path, n_ctx=n_ctx, name=name, **options)
        if named:
            reader.prompt_format = named.prompt_format
        return reader

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)) for t in texts]

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        out = []
        for prompt in prompts:
            res = self.llm.create_completion(
                prompt, max_tokens=max_new_tokens, temperature=0.0, top_k=1, stop=["\n"], echo=False
            )
            usage = res.get("usage", {})
            out.append(
                Generation(
                    first_line(res["choices"][0]["text"]),
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                )
            )
        return out

    # ---- scoring: the answer tokens evaluated after the prompt's cached state

    def _tokens(self, text: str) -> list[int]:
        # as create_completion tokenizes a prompt, so that its KV cache is reused
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def _logprobs_after(self, tokens: list[int], start: int) -> list[float]:
        """Log-probabilities of tokens[start:], each given everything before it.

        Tokens already in llama.cpp's KV cache (the longest prefix shared with what it evaluated last, e.g. the
        prompt create_completion just answered) are not evaluated again: one decode runs tokens[start-1:] with
        logits for every position, so a gold answer after an answered prompt costs its own tokens plus one."""
        import numpy as np

        llm = self.llm
        keep = start - 1  # the last prompt token is decoded again: its logits score the first answer token
        if keep < 0 or start >= len(tokens):
            return []
        if len(tokens) > self.n_ctx:
            raise BadInputError(f"prompt + continuation is {len(tokens)} tokens, more than n_ctx={self.n_ctx}")
        m = common_prefix_len([llm.input_ids[: llm.n_tokens].tolist(), tokens[:keep]])
        llm.n_tokens = m
        if m < keep:
            llm.eval(tokens[m:keep])  # drops the cache past m, evaluates the rest of the prompt
        out: list[float] = []
        pos = keep
        rest = tokens[keep:]
        while rest:
            chunk, rest = rest[: llm.n_batch], rest[llm.n_batch :]
            llm._ctx.kv_cache_seq_rm(-1, pos, -1)
            llm._batch.set_batch(batch=chunk, n_past=pos, logits_all=True)
            llm._ctx.decode(llm._batch)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(chunk), self.n_vocab)).astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            # row j predicts the token after chunk[j]
            out.extend(float(logp[j, t]) for j, t in enumerate(chunk[1:] + rest[:1]))
            pos += len(chunk)
        # the cache now holds the continuation too; llama-cpp-python's bookkeeping stops at the prompt, and the
        # next evaluation (ours or create_completion's) drops the rest and replays a token for fresh logits
        llm.n_tokens = keep
        llm._requires_eval = True
        return out[: len(tokens) - start]

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        """Teacher-forced log-probability of each continuation, as the model splits prompt + continuation."""
        check_scoring(prompts, continuations)
        out = []
        for p, c in zip(prompts, continuations):
            full = self._tokens(p + c)
            start = max(common_prefix_len([full, self._tokens(p)]), 1)
            lps = self._logprobs_after(full, start)
            toks = tuple(self.llm.detokenize([t]).decode("utf-8", errors="replace") for t in full[start:])
            out.append(Score(float(sum(lps)), tuple(lps), toks))
        return out

    def generate_scored_batch(self, prompts: Sequence[str], golds: Sequence[Sequence[str]],
                              max_new_tokens: int = 16) -> list[Generation]:
        """Each prompt answered, then its gold aliases scored on the prompt's cached state (answer tokens only)."""
        check_golds(prompts, golds)
        out = []
        for p, aliases in zip(prompts, golds):
            (gen,) = self.generate_batch([p], max_new_tokens)
            kept = scored_aliases(aliases)
            out.extend(with_golds([gen], [(0, a) for a in kept],
                                  self.score_batch([p] * len(kept), [gold_continuation(p, a) for a in kept])))
        return out

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
