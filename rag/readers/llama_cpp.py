"""llama.cpp reader (llama-cpp-python): GGUF models, the fast default on CPU.

One `Llama` instance per reader. Prompts run one after another: llama-cpp-python keeps the previous
prompt's tokens in its KV cache and evaluates only what follows the longest common prefix, so the
few-shot demonstrations that open every prompt of a run are computed once.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError, require
from rag.readers.base import READERS, Generation, Reader, check_prompts, first_line, n_cores
from rag.readers.models import resolve_gguf

log = logging.getLogger(__name__)


def gpu_offload_available() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (a CUDA/Metal/Vulkan build with a device)."""
    llama_cpp = require("llama_cpp", "readers")
    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # pragma: no cover - very old bindings
        return False


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
        n_ctx: int = 2048,
        n_threads: int | None = None,
        device: str = "auto",
        n_batch: int = 512,
        name: str | None = None,
        extra_buffers: bool = False,
    ):
        """`extra_buffers` enables llama.cpp's extra CPU weight layouts (AMX / repacked); off by default
        because with llama-cpp-python 0.3.36 on an AMX CPU (this machine) decoding then segfaults."""
        llama_cpp = require("llama_cpp", "readers")
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
        self.n_ctx = self.llm.n_ctx()
        self.n_params = int(llama_cpp.llama_model_n_params(self.llm.model))
        self.n_embd = self.llm.n_embd()
        self.n_vocab = self.llm.n_vocab()

    @classmethod
    def load(cls, model: str, n_ctx: int | None = None, **options) -> "LlamaCppReader":
        path, named = resolve_gguf(model)
        n_ctx = n_ctx or (named.n_ctx if named else 2048)
        reader = cls(path, n_ctx=n_ctx, name=named.name if named else None, **options)
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

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
