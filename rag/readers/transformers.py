"""Hugging Face transformers reader: a hub id, a local model folder, or a GGUF file (`gguf_file=`).

A GGUF file is dequantized by transformers on first load (tens of seconds); the dequantized model is
then saved once with `save_pretrained` under the cache folder ($RAG_CACHE/models/dequantized/...),
so later loads take about a second. Generation is greedy, batched with left padding, and stops a row
when its last token contains a newline (a per-vocabulary mask, cheaper than `stop_strings`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError, require
from rag.readers.base import DEFAULT_N_CTX, READERS, Generation, Reader, check_prompts, first_line
from rag.readers.models import NAMED_MODELS, cache_dir, model_path

log = logging.getLogger(__name__)

DEQUANT_FORMAT = 1


def dequantized_dir(gguf: Path) -> Path:
    from rag.artifacts import quick_fingerprint

    return cache_dir() / "dequantized" / f"{gguf.stem}-{quick_fingerprint(gguf)[:16]}"


def _from_pretrained(transformers, torch, source: str, dtype: str = "float32", **kw):
    # no "Loading weights" bar on stderr: rag has its own progress lines, and `rag ask --json` output stays JSON
    transformers.utils.logging.disable_progress_bar()
    tok = transformers.AutoTokenizer.from_pretrained(source, **kw)
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **kw)
    return tok, model


def load_dequantized(gguf: Path, dtype: str = "float32"):
    """(tokenizer, model) for a GGUF file, through the cached dequantized copy (made on first use; loaded from it
    straight in `dtype`, so a bf16 reader never holds an fp32 copy)."""
    transformers = require("transformers", "transformers")
    torch = require("torch", "transformers")
    require("gguf", "transformers")
    from rag.artifacts import MANIFEST, atomic_dir, write_manifest

    folder = dequantized_dir(gguf)
    if (folder / MANIFEST).exists():
        return _from_pretrained(transformers, torch, str(folder), dtype=dtype)
    log.info("dequantizing %s (first load only; cached in %s)", gguf, folder)
    tok, model = _from_pretrained(transformers, torch, str(gguf.parent), gguf_file=gguf.name)
    # what remains is a plain fp32 model: drop the quantizer so save_pretrained writes ordinary weights
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(folder, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind="reader/dequantized", format=DEQUANT_FORMAT, libraries=("transformers", "gguf"), source=str(gguf))
    return tok, model


def open_model(model: str, gguf_file: str | None = None, dtype: str = "float32"):
    """(tokenizer, model in `dtype` (a torch dtype name), NamedModel or None) for a named model, a GGUF file, a
    local folder or a hub id.

    Named models and GGUF files go through the cached dequantized copy (`load_dequantized`).
    """
    transformers = require("transformers", "transformers")
    torch = require("torch", "transformers")
    if model in NAMED_MODELS:
        tok, m = load_dequantized(model_path(model), dtype)
        return tok, m, NAMED_MODELS[model]
    if gguf_file is not None or model.lower().endswith(".gguf"):
        path = Path(model) / gguf_file if gguf_file else Path(model)
        if not path.is_file():
            raise BadInputError(f"GGUF file {path} does not exist")
        tok, m = load_dequantized(path, dtype)
        return tok, m, None
    # a local folder or a hub id (offline machines need the folder)
    try:
        tok, m = _from_pretrained(transformers, torch, model, dtype=dtype)
    except OSError as e:
        raise BadInputError(
            f"cannot load {model!r} with transformers ({e}); pass a local model folder, a .gguf file, "
            f"or a named model ({', '.join(sorted(NAMED_MODELS))})"
        ) from e
    return tok, m, None


class HFTokenized(Reader):
    """A reader whose prompts are tokenized by a Hugging Face tokenizer `self.tok` (with its BOS, if any)."""

    tok = None

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tok(list(texts), add_special_tokens=True)["input_ids"]]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._encode(texts)]

    def _end_ids(self) -> set[int]:
        """Tokens that end an answer besides a newline: every special token (EOS, end of turn, and for Qwen
        <|endoftext|>, which its instruct models emit after an answer although their EOS is <|im_end|>), as
        llama.cpp stops at every end-of-generation token."""
        return {i for i in (*self.tok.all_special_ids, self.tok.eos_token_id) if i is not None}


@READERS.register("transformers")
class TransformersReader(HFTokenized):
    def __init__(self, tokenizer, model, n_ctx: int = DEFAULT_N_CTX, device: str = "auto", name: str = "transformers", batch_size: int = 8):
        from rag.device import resolve_device, use_all_cores

        torch = require("torch", "transformers")
        self.device = resolve_device(device)
        if self.device == "cpu":
            use_all_cores()
        self.tok = tokenizer
        self.model = model.to(self.device).eval()
        self.name = name
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", None) or n_ctx
        self.n_ctx = min(n_ctx, int(limit))
        self.n_params = sum(p.numel() for p in model.parameters())
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        # vocabulary mask: True for tokens whose text contains a newline
        vocab = len(self.tok)
        texts = self.tok.batch_decode([[i] for i in range(vocab)])
        mask = torch.zeros(max(vocab, model.config.vocab_size), dtype=torch.bool)
        self._newline_ids = {i for i, t in enumerate(texts) if "\n" in t}
        mask[sorted(self._newline_ids)] = True
        self._stop_ids = self._end_ids() | ({self.tok.pad_token_id} - {None})
        self._newline = mask.to(self.device)
        self._torch = torch

    @classmethod
    def load(cls, model: str, gguf_file: str | None = None, n_ctx: int | None = None, device: str = "auto", **options) -> "TransformersReader":
        tok, m, named = open_model(model, gguf_file)
        reader = cls(tok, m, n_ctx=n_ctx or (named.n_ctx if named else DEFAULT_N_CTX), device=device, name=model, **options)
        if named:
            reader.prompt_format = named.prompt_format
        return reader

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        torch = self._torch
        transformers = require("transformers", "transformers")
        newline = self._newline

        class NewlineStop(transformers.StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return newline[input_ids[:, -1]]

        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            enc = self.tok(batch, return_tensors="pt", padding=True, add_special_tokens=True).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    stopping_criteria=transformers.StoppingCriteriaList([NewlineStop()]),
                    pad_token_id=self.tok.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            lengths = enc["attention_mask"].sum(dim=1).tolist()
            for row, n_prompt in zip(new.tolist(), lengths):
                # tokens up to the first newline, end of sequence or padding (finished rows are padded)
                kept = []
                for t in row:
                    if t in self._stop_ids:
                        break
                    kept.append(t)
                    if t in self._newline_ids:
                        break
                out.append(Generation(first_line(self.tok.decode(kept, skip_special_tokens=True)), int(n_prompt), len(kept)))
        return out
