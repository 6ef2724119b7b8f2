"""The reader interface (prompts in, first-line answers out) and the backend registry.

Every backend decodes greedily and stops at the first newline; the answer is the stripped first line.
Backends that can also score a given continuation (a gold answer's log-probability) override `score_batch`;
`generate_scored_batch` answers and scores the gold answers after the same prompts (derived from the two, and
overridden where a backend can reuse the prompt's evaluated state so that scoring costs only the answer tokens).
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Sequence

from rag.errors import BadInputError, RagError
from rag.registry import Registry

DEFAULT_N_CTX = 2048  # the context prompts are fitted to when neither the model nor the caller sets one

# backend name -> Reader subclass with a `load(model, **options)` classmethod; backends defined above this
# package are named with the module that registers them, imported on first use (READERS.get)
LAZY_BACKENDS = {"tiny-lm": "rag.world.tinylm"}  # the model `rag bench` trains
READERS = Registry("reader backend", modules=LAZY_BACKENDS)


@dataclass(frozen=True)
class GoldScore:
    """The best-scoring gold alias teacher-forced after a prompt: its summed log-probability (natural log) and
    its length in the model's tokens (per-token log-probability = logprob / tokens)."""

    answer: str
    logprob: float
    tokens: int

    @property
    def per_token(self) -> float:
        return self.logprob / self.tokens if self.tokens else 0.0


@dataclass(frozen=True)
class Generation:
    """One completion: `text` is the stripped first line of what the model wrote; `gold` is set by
    `generate_scored_batch` (None where no alias could be scored)."""

    text: str
    prompt_tokens: int
    new_tokens: int
    gold: GoldScore | None = None


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

    def generate_scored_batch(self, prompts: Sequence[str], golds: Sequence[Sequence[str]],
                              max_new_tokens: int = 16) -> list[Generation]:
        """`generate_batch`, plus each prompt's best gold alias scored teacher-forced after the same prompt (the
        `A:` continuation up to the newline; see `gold_continuation`). Raises ScoringNotSupported where the
        backend cannot score. This derived form scores in a second pass; backends that keep the prompt's state
        override it so that scoring costs only the answer tokens."""
        check_golds(prompts, golds)
        gens = self.generate_batch(prompts, max_new_tokens)
        pairs = [(i, a) for i, aliases in enumerate(golds) for a in scored_aliases(aliases)]
        scores = self.score_batch([prompts[i] for i, _ in pairs], [gold_continuation(prompts[i], a) for i, a in pairs])
        return with_golds(gens, pairs, scores)

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


MAX_GOLD_ALIASES = 16  # aliases scored per question (TriviaQA lists up to ~100, mostly case and spelling variants)


def check_golds(prompts: Sequence[str], golds: Sequence[Sequence[str]]) -> None:
    if isinstance(prompts, str) or len(prompts) != len(golds) or any(isinstance(g, str) for g in golds):
        raise BadInputError("generate_scored_batch takes a list of prompts and, per prompt, a list of gold answers")


def scored_aliases(aliases: Sequence[str]) -> list[str]:
    """The aliases that are scored: non-empty, first occurrence of each, at most MAX_GOLD_ALIASES in the QA
    set's order (the first is the canonical answer)."""
    return list(dict.fromkeys(a.strip() for a in aliases if a.strip()))[:MAX_GOLD_ALIASES]


def gold_continuation(prompt: str, alias: str) -> str:
    """The text a reader would write after `prompt` to answer `alias`: " alias" after "A:", the alias alone after
    whitespace. The newline that ends an answer is not part of it."""
    return alias if prompt[-1:].isspace() else " " + alias


def best_gold(aliases: Sequence[str], scores: Sequence[Score]) -> GoldScore | None:
    """The alias with the highest summed log-probability (ties: the earlier alias)."""
    best = None
    for a, s in zip(aliases, scores):
        if s.token_logprobs and (best is None or s.logprob > best.logprob):
            best = GoldScore(a, float(s.logprob), len(s.token_logprobs))
    return best


def with_golds(gens: Sequence[Generation], pairs: Sequence[tuple[int, str]], scores: Sequence[Score]) -> list[Generation]:
    """Each generation with the best of its (prompt index, alias) pairs' scores."""
    per: dict[int, tuple[list[str], list[Score]]] = {}
    for (i, a), s in zip(pairs, scores):
        per.setdefault(i, ([], []))
        per[i][0].append(a)
        per[i][1].append(s)
    return [replace(g, gold=best_gold(*per[i])) if i in per else g for i, g in enumerate(gens)]


def check_prompts(prompts: Sequence[str], max_new_tokens: int) -> None:
    if isinstance(prompts, str):
        raise BadInputError("generate_batch takes a list of prompts, not a single string")
    if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise BadInputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
