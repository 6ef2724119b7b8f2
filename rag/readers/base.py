"""The reader interface (prompts in, first-line answers out) and the backend registry.

Every backend decodes greedily and stops at the first newline; the answer is the stripped first line.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

from rag.errors import BadInputError
from rag.registry import Registry

DEFAULT_N_CTX = 2048  # the context prompts are fitted to when neither the model nor the caller sets one

# backend name -> Reader subclass with a `load(model, **options)` classmethod; backends defined above this
# package are named with the module that registers them, imported on first use (READERS.get)
LAZY_BACKENDS = {"tiny-lm": "rag.world.tinylm"}  # the model `rag bench` trains
READERS = Registry("reader backend", modules=LAZY_BACKENDS)


@dataclass(frozen=True)
class Generation:
    """One completion: `text` is the stripped first line of what the model wrote."""

    text: str
    prompt_tokens: int
    new_tokens: int


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Reader(ABC):
    """A causal LM behind one batch method. `n_ctx` is the context size prompts are fitted to."""

    name: str = "reader"
    n_ctx: int = DEFAULT_N_CTX
    n_params: int = 0  # for FLOP estimates; 0 when unknown
    prompt_format: str = "kandpal"  # the format `answer` uses unless told otherwise (a named model's setting)

    @abstractmethod
    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        """Greedy completions, stopped at the first newline or after `max_new_tokens` tokens."""

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Prompt length of each text in the model's own tokens (including any BOS the model adds)."""

    def generate(self, prompt: str, max_new_tokens: int = 16) -> Generation:
        return self.generate_batch([prompt], max_new_tokens)[0]

    @classmethod
    @abstractmethod
    def load(cls, model: str, **options) -> "Reader":
        """Open `model` (a named model, a path, or a hub id, depending on the backend)."""

    def close(self) -> None:
        """Free the model (optional)."""


def check_prompts(prompts: Sequence[str], max_new_tokens: int) -> None:
    if isinstance(prompts, str):
        raise BadInputError("generate_batch takes a list of prompts, not a single string")
    if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise BadInputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
