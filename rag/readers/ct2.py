"""The "ct2" reader: CTranslate2, a C++ inference engine for Transformer models, with int8 weights on CPU.

Measured on this project's 2-core AVX512-VNNI/BF16 machine (no AMX; eval/results/reader-fast.md) its int8
prefill of a lone 450-token prompt is the fastest of llama.cpp Q4_K_M, torch fp32/bf16, OpenVINO fp32/bf16 and
itself in fp32 (3.6x llama.cpp; int8 dot products run at several times the fp32 rate), but per question
(closed-book + two retrieval prompts) the torch bf16 reader was as fast or faster, and int8 re-quantization
changes more answers (eval/results/reader-agreement.md); `auto` picks it on CPUs with VNNI and no bf16 units. The same weights as the other backends: a named model's
dequantized GGUF (rag.readers.transformers.load_dequantized), a .gguf file, a local model folder or a hub id,
converted once to CTranslate2's format (weights stored in the precision asked for; cached under
$RAG_CACHE/models/ctranslate2/).

    prefix    the batch's common token prefix (the few-shot demonstrations) goes in as CTranslate2's
              `static_prompt`, whose decoder state the engine caches and reuses for later calls with the
              same prefix. A one-prompt call reuses the longest static prompt used before that begins it
              (so a run answering one prompt at a time adds no new cache entries)
    decode    greedy (top-1), every token that contains a newline is an end token
    batches   `batch_size` prompts per CTranslate2 call, length-sorted; default 1: on the 2-core EPYC here
              8 RAG prompts took about twice as long in batches of 8 as one at a time (padding, and its
              batched int8 kernels gain nothing on 2 cores)

precision: "int8" (default), "fp32", "bf16" / "fp16" where CTranslate2 offers them on this device. `score_batch` is CTranslate2's teacher-forced scoring (without the prefix cache).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError, require
from rag.readers.base import DEFAULT_N_CTX, READERS, Generation, Reader, Score, check_prompts, check_scoring, first_line
from rag.readers.kv_prefix import common_prefix_len
from rag.readers.transformers import HFTokenized

log = logging.getLogger(__name__)

CONVERT_FORMAT = 1
COMPUTE_TYPES = {"int8": "int8", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
MIN_STATIC_PROMPT = 16  # shorter shared prefixes are not worth a cache entry


def converted_dir(source: str, precision: str = "int8") -> Path:
    """Where the CTranslate2 copy of a model folder or hub id, with weights in `precision`, is cached."""
    from rag.readers.models import cache_dir

    name = Path(source).name if Path(source).exists() else source.replace("/", "--")
    return cache_dir() / "ctranslate2" / f"{name}-{precision}"


def convert(source: str, precision: str = "int8") -> Path:
    """The CTranslate2 copy of an HF model folder or hub id with weights stored in `precision` (a key of
    COMPUTE_TYPES), converted once (atomically) and cached."""
    ctranslate2 = require("ctranslate2", "ct2")
    from rag.artifacts import MANIFEST, atomic_dir, write_manifest

    folder = converted_dir(source, precision)
    if (folder / MANIFEST).exists():
        return folder
    log.info("converting %s to CTranslate2 %s (first use only; cached in %s)", source, precision, folder)
    with atomic_dir(folder, overwrite=True) as tmp:
        ctranslate2.converters.TransformersConverter(source).convert(str(tmp), quantization=COMPUTE_TYPES[precision], force=True)
        write_manifest(tmp, kind="reader/ctranslate2", format=CONVERT_FORMAT, libraries=("ctranslate2", "transformers"),
                       source=source)
    return folder


def hf_source(model: str, gguf_file: str | None = None) -> tuple[str, object]:
    """(HF folder or hub id, NamedModel or None): GGUF models go through the cached dequantized folder."""
    from rag.readers.models import NAMED_MODELS, model_path
    from rag.readers.transformers import dequantized_dir, load_dequantized

    if model in NAMED_MODELS or gguf_file is not None or model.lower().endswith(".gguf"):
        path = model_path(model) if model in NAMED_MODELS else (Path(model) / gguf_file if gguf_file else Path(model))
        if not Path(path).is_file():
            raise BadInputError(f"GGUF file {path} does not exist")
        folder = dequantized_dir(Path(path))
        if not (folder / "manifest.json").exists():
            load_dequantized(Path(path))  # made once, shared with the torch and transformers backends
        return str(folder), NAMED_MODELS[model] if model in NAMED_MODELS else None
    return model, None


@READERS.register("ct2")
class Ct2Reader(HFTokenized):
    def __init__(self, folder: str | Path, tokenizer, *, precision: str = "int8", device: str = "auto", threads: int | None = None,
                 n_ctx: int = DEFAULT_N_CTX, name: str = "ct2", batch_size: int = 1):
        ctranslate2 = require("ctranslate2", "ct2")
        from rag.device import cpu_threads, resolve_device

        self.device = resolve_device(device)
        if self.device not in ("cpu", "cuda"):
            raise BadInputError(f"the ct2 backend runs on cpu or cuda, not {self.device!r}")
        if precision == "auto":
            precision = "int8"
        if precision not in COMPUTE_TYPES:
            raise BadInputError(f"precision must be one of {', '.join(COMPUTE_TYPES)} (or auto), got {precision!r}")
        supported = ctranslate2.get_supported_compute_types(self.device)
        if COMPUTE_TYPES[precision] not in supported:
            raise BadInputError(f"CTranslate2 offers no {precision} on this {self.device} (it offers: {', '.join(sorted(supported))})")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.precision = precision
        self.generator = ctranslate2.Generator(str(folder), device=self.device, compute_type=COMPUTE_TYPES[precision],
                                               intra_threads=threads or cpu_threads())
        self.tok = tokenizer
        self.name = name
        self.n_ctx = n_ctx
        self.batch_size = batch_size
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self._special = self._end_ids()
        self._ends = sorted({i for i, t in enumerate(texts) if "\n" in t} | self._special)
        self._static: list[tuple[str, ...]] = []  # static prompts used so far (CTranslate2 caches their state)
        self._last_row: list[str] = []

    @classmethod
    def load(cls, model: str, gguf_file: str | None = None, n_ctx: int | None = None, **options) -> "Ct2Reader":
        """A named model, a .gguf file, a local model folder or a hub id; options: precision ("int8", "fp32",
        "bf16" where offered), device, threads, batch_size."""
        transformers = require("transformers", "transformers")
        source, named = hf_source(model, gguf_file)
        try:
            tok = transformers.AutoTokenizer.from_pretrained(source)
            folder = convert(source, "int8" if options.get("precision", "int8") in ("int8", "auto") else options["precision"])
        except OSError as e:
            raise BadInputError(f"cannot load {model!r} for CTranslate2 ({e}); pass a local model folder, a .gguf file "
                                f"or a named model") from e
        reader = cls(folder, tok, n_ctx=n_ctx or (named.n_ctx if named else DEFAULT_N_CTX), name=model, **options)
        if named:
            reader.prompt_format = named.prompt_format
        return reader

    def _static_prompt(self, rows: list[list[str]]) -> tuple[str, ...]:
        """The prefix to pass as static_prompt (maybe empty); each row keeps at least one token of its own.

        Several rows: their common prefix, unless a static prompt used before that begins them all is at most
        MIN_STATIC_PROMPT tokens shorter (then that one: fewer cache entries).
        One row: the longest static prompt used before that begins it, else (nothing used yet) its common
        prefix with the previous lone row; so one-prompt-at-a-time runs add one cache entry, not one per prompt.
        """
        cap = min(len(r) for r in rows) - 1
        used = [s for s in self._static if len(s) <= cap and all(tuple(r[: len(s)]) == s for r in rows)]
        best = max(used, key=len, default=())
        if len(rows) > 1:
            p = min(common_prefix_len(rows), cap)
        else:
            p = min(common_prefix_len([rows[0], self._last_row]), cap) if not best else 0
            self._last_row = rows[0]
        if p >= MIN_STATIC_PROMPT and p > len(best) + (MIN_STATIC_PROMPT if best else 0):
            best = tuple(rows[0][:p])
            self._static.append(best)
        return best

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        if not prompts:
            return []
        ids = self._encode(prompts)
        rows = [self.tok.convert_ids_to_tokens(r) for r in ids]
        out: list[Generation | None] = [None] * len(rows)
        static = self._static_prompt(rows)  # one for the whole call: its micro-batches share one cache entry
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = [rows[i] for i in chunk]
            res = self.generator.generate_batch(
                [r[len(static):] for r in batch], max_length=max_new_tokens, sampling_topk=1, beam_size=1,
                end_token=self._ends, return_end_token=True, include_prompt_in_result=False,
                static_prompt=list(static) or None,
            )
            for i, r in zip(chunk, res):
                new = list(r.sequences_ids[0])
                if new and new[-1] in self._special:
                    new = new[:-1]
                out[i] = Generation(first_line(self.tok.decode(new, skip_special_tokens=True)), len(ids[i]), len(new))
        return out  # type: ignore[return-value]

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        check_scoring(prompts, continuations)
        full = self._encode([p + c for p, c in zip(prompts, continuations)])
        alone = self._encode(list(prompts))
        res = self.generator.score_batch([self.tok.convert_ids_to_tokens(f) for f in full])
        out = []
        for f, a, r in zip(full, alone, res):
            start = max(1, common_prefix_len([a, f]))
            vals = [float(x) for x in r.log_probs[start - 1 :]]  # log_probs[j] scores token j + 1
            out.append(Score(sum(vals), tuple(vals), tuple(self.tok.decode([t]) for t in f[start:])))
        return out

    def close(self) -> None:
        self.generator = None
