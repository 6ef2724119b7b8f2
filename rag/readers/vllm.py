"""Reader backend "vllm": offline vLLM (`LLM.generate`) on a CUDA GPU; the extra `rag[vllm]` (pulls CUDA builds).

    generate_batch  one LLM.generate call for the whole batch (vLLM schedules it continuously), greedy
                    (temperature 0), stop at "\\n", max_tokens; answers in prompt order
    score_batch     prompt + continuation as token ids, max_tokens 1, prompt_logprobs 1: the continuation's
                    tokens are those after the longest common token prefix of prompt and prompt + continuation
    count_tokens    vLLM's own tokenizer (LLM.get_tokenizer), special tokens included as vLLM adds them

`model` is what vLLM loads (a Hugging Face id or a local folder); a named model (smollm2-135m, ...) is loaded
from the same dequantized folder the transformers backend makes from its GGUF (needs `rag[transformers]`),
so no model hub is needed. Options go to vllm.LLM: dtype, gpu_memory_utilization, tensor_parallel_size,
quantization, max_num_seqs, enforce_eager, tokenizer, seed; n_ctx becomes max_model_len.
With the Ray engine (device auto) the eval runner starts one reader actor per GPU, each asking Ray for a whole
GPU (rag.engine.resources); with --workers above the GPU count actors share GPUs, and each then needs
gpu_memory_utilization set to its share (vLLM takes 0.9 of a GPU's memory by default).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError, RagError, require
from rag.readers.base import DEFAULT_N_CTX, READERS, Generation, Reader, Score, check_prompts, check_scoring, first_line

log = logging.getLogger(__name__)

LLM_OPTIONS = ("dtype", "gpu_memory_utilization", "tensor_parallel_size", "quantization", "max_num_seqs",
               "enforce_eager", "tokenizer", "seed")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # vllm always brings torch; without it there is no GPU path either
        return False
    return bool(torch.cuda.is_available())


def check_options(device: str, options: dict) -> dict:
    """The keyword arguments for vllm.LLM, or an error before anything heavy is imported."""
    if device not in ("auto", "cuda", "gpu"):
        raise BadInputError(f"the vllm backend runs on CUDA GPUs only, but was given device {device!r} (with the Ray "
                            f"engine: the cluster reports no GPUs); on CPU use the llama-cpp or transformers backend")
    unknown = sorted(set(options) - set(LLM_OPTIONS))
    if unknown:
        raise BadInputError(f"unknown option(s) for the vllm backend: {', '.join(unknown)}; choose from: "
                            f"{', '.join(LLM_OPTIONS)}, n_ctx, device")
    return {"seed": 0, **{k: v for k, v in options.items() if v is not None}}


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@READERS.register("vllm")
class VllmReader(Reader):
    def __init__(self, llm, vllm_module, name: str, n_ctx: int):
        self.llm = llm
        self._vllm = vllm_module
        self.tok = llm.get_tokenizer()
        self.name = name
        self.n_ctx = n_ctx
        self.device = "cuda"

    @classmethod
    def load(cls, model: str, n_ctx: int | None = None, device: str = "auto", **options) -> "VllmReader":
        kwargs = check_options(device, options)
        vllm = require("vllm", "vllm")
        if not cuda_available():
            raise RagError("the vllm backend needs a CUDA GPU and none is visible to this process (check "
                           "CUDA_VISIBLE_DEVICES; on a Ray cluster, that its workers have GPUs)")
        from rag.readers.models import NAMED_MODELS

        source, prompt_format = model, None
        if model in NAMED_MODELS:
            from rag.readers.models import model_path
            from rag.readers.transformers import dequantized_dir, load_dequantized

            gguf = model_path(model)
            if not (dequantized_dir(gguf) / "manifest.json").exists():
                load_dequantized(gguf)  # made once (tens of seconds), then shared with the transformers backend
            source = str(dequantized_dir(gguf))
            prompt_format = NAMED_MODELS[model].prompt_format
            n_ctx = n_ctx or NAMED_MODELS[model].n_ctx
        elif Path(model).suffix.lower() == ".gguf" and "tokenizer" not in kwargs:
            raise BadInputError("vLLM loads a .gguf file only with a tokenizer: set reader.options.tokenizer to its "
                                "Hugging Face tokenizer folder or id")
        if n_ctx:
            kwargs["max_model_len"] = int(n_ctx)
        llm = vllm.LLM(model=source, **kwargs)
        limit = int(getattr(getattr(llm.llm_engine, "model_config", None), "max_model_len", 0) or n_ctx or DEFAULT_N_CTX)
        reader = cls(llm, vllm, name=model, n_ctx=limit)
        if prompt_format:
            reader.prompt_format = prompt_format
        return reader

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tok.encode(t)) for t in texts]

    def _params(self, **kw):
        return self._vllm.SamplingParams(temperature=0.0, **kw)

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        params = self._params(max_tokens=max_new_tokens, stop=["\n"])
        try:
            outs = self.llm.generate(list(prompts), params, use_tqdm=False)
        except ValueError as e:  # a prompt longer than max_model_len, ...
            raise BadInputError(f"vLLM refused the batch: {e}") from e
        return [Generation(first_line(o.outputs[0].text), len(o.prompt_token_ids), len(o.outputs[0].token_ids)) for o in outs]

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        check_scoring(prompts, continuations)
        ids = [self.tok.encode(p + c) for p, c in zip(prompts, continuations)]
        starts = [max(1, common_prefix(self.tok.encode(p), full)) for p, full in zip(prompts, ids)]
        params = self._params(max_tokens=1, prompt_logprobs=1)
        outs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        scores = []
        for full, start, o in zip(ids, starts, outs):
            values, tokens = [], []
            for i in range(start, len(full)):
                entry = o.prompt_logprobs[i][full[i]]  # position i: {token id: Logprob} for the actual token and top-1
                values.append(float(entry.logprob))
                tokens.append(entry.decoded_token if entry.decoded_token is not None else self.tok.decode([full[i]]))
            scores.append(Score(sum(values), tuple(values), tuple(tokens)))
        return scores

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            self.llm = None
            del llm
            try:
                import gc

                import torch

                gc.collect()
                torch.cuda.empty_cache()
            except Exception:  # pragma: no cover - best effort freeing of GPU memory
                log.debug("could not empty the CUDA cache", exc_info=True)
