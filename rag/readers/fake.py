"""A deterministic reader for tests: no model, predictable answers, whitespace "tokens".

Answers: when passage lines ("Passage: <title>: <text>") come right before the final question, the
title of the first of them (it "reads" the top passage); otherwise the answer from `known` for that
question, else "unknown". Token counts are whitespace words plus one for BOS.

Scores: a continuation's tokens are its whitespace words; a word of the answer the reader would give costs
log 0.9 (case-insensitive), any other word log 0.05, so the answer it gives scores best and a gold answer it
does not know scores low, deterministically.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from rag.readers.base import DEFAULT_N_CTX, READERS, Generation, Reader, Score, check_prompts, check_scoring

_PASSAGE = re.compile(r"^Passage: (.*?): ")


@READERS.register("fake")
class FakeReader(Reader):
    def __init__(self, known: dict[str, str] | None = None, n_ctx: int = DEFAULT_N_CTX, name: str = "fake"):
        self.known = {k.lower(): v for k, v in (known or {}).items()}
        self.n_ctx = n_ctx
        self.name = name
        self.calls: list[list[str]] = []  # every batch it was given, for tests

    @classmethod
    def load(cls, model: str = "fake", **options) -> "FakeReader":
        return cls(known=options.get("known"), n_ctx=options.get("n_ctx") or DEFAULT_N_CTX, name=model)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 1 for t in texts]

    def _answer(self, prompt: str) -> str:
        lines = prompt.rstrip().split("\n")
        # ... Passage lines, "Q: <question>", "A:"
        if len(lines) < 2 or not lines[-2].startswith("Q: "):
            return "unknown"
        question = lines[-2][3:].strip()
        i = len(lines) - 3
        first_title = None
        while i >= 0 and (m := _PASSAGE.match(lines[i])):
            first_title = m.group(1)
            i -= 1
        if first_title is not None:
            return first_title
        return self.known.get(question.lower(), "unknown")

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            words = self._answer(p).split()[:max_new_tokens]
            out.append(Generation(" ".join(words), self.count_tokens([p])[0], len(words) + 1))
        return out

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        check_scoring(prompts, continuations)
        out = []
        for p, c in zip(prompts, continuations):
            known = {w.lower() for w in self._answer(p).split()}
            words = c.split()
            lps = tuple(math.log(0.9) if w.lower() in known else math.log(0.05) for w in words)
            out.append(Score(float(sum(lps)), lps, tuple(words)))
        return out
