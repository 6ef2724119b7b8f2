"""The reader interface (prompts in, first-line answers out) and the backend registry.

Every backend decodes greedily and stops at the first newline; the answer is the stripped first line.
Backends that can also score a given continuation (a gold answer's log-probability) override `score_batch`.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

from rag.errors import BadInputError, RagError
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


@dataclass(frozen=True)
class Score:
    """Log-probability (natural log) of a continuation teacher-forced after a prompt.

    `tokens` are the continuation's tokens as the model split prompt + continuation, `token_logprobs` their
    log-probabilities each given everything before it; `logprob` is their sum.
    """

    logprob: float
    token_logprobs: tuple[float, ...]
    tokens: tuple[str, ...]


class ScoringNotSupported(RagError):
    """The backend (or the server behind it) cannot return a continuation's log-probability."""


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

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        """Log-probability of each continuation (e.g. " Jane Austen") right after its prompt (optional)."""
        raise ScoringNotSupported(f"the {self.backend} reader backend does not score continuations")

    def score(self, prompt: str, continuation: str) -> Score:
        return self.score_batch([prompt], [continuation])[0]

    @property
    def backend(self) -> str:
        """The name this class is registered under in READERS (its class name if unregistered)."""
        return next((k for k, v in READERS.items() if v is type(self)), type(self).__name__)

    @classmethod
    @abstractmethod
    def load(cls, model: str, **options) -> "Reader":
        """Open `model` (a named model, a path, or a hub id, depending on the backend)."""

    def close(self) -> None:
        """Free the model (optional)."""


def check_scoring(prompts: Sequence[str], continuations: Sequence[str]) -> None:
    if isinstance(prompts, str) or isinstance(continuations, str):
        raise BadInputError("score_batch takes lists of prompts and continuations, not single strings")
    if len(prompts) != len(continuations):
        raise BadInputError(f"got {len(prompts)} prompts but {len(continuations)} continuations; pass one per prompt")


def check_prompts(prompts: Sequence[str], max_new_tokens: int) -> None:
    if isinstance(prompts, str):
        raise BadInputError("generate_batch takes a list of prompts, not a single string")
    if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise BadInputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
