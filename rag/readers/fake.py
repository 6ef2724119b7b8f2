"""A deterministic reader for tests: no model, predictable answers, whitespace "tokens".

Answers: when passage lines ("Passage: <title>: <text>") come right before the final question, the
title of the first of them (it "reads" the top passage); otherwise the answer from `known` for that
question, else "unknown". Token counts are whitespace words plus one for BOS.
"""
from __future__ import annotations

import re
from typing import Sequence

from rag.readers.base import DEFAULT_N_CTX, READERS, Generation, Reader, check_prompts

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
