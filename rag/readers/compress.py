"""Extractive compression of retrieved passages: keep the sentences that best match the question.

    select_sentences(question, passages, n, df)  -> the same passages (ids, titles, rank order) holding only the
                                                    n best sentences among them; passages left empty are dropped
    select_batch(questions, passages_per_question, n, df)   the same for a batch of questions
    select_demos(demos, n, df)                   -> demonstrations whose own passage is narrowed the same way

A sentence's score is the sum, over the question's BM25 tokens it contains, of ln(1 + N / (df + 1)): with
`df` (a rag.tokenize.DocFreq, from the run's BM25 index) N and df are corpus passage counts, so a rare name of the question
outweighs a relation word; without one they are counted over the candidate sentences themselves, which is
weaker (the question's subject is in most candidates, so its name counts for little there). Ties go to the
better-ranked passage, then the earlier sentence; sentences sharing nothing with the question fill the budget
only when too few do. This is the extractive compressor of RECOMP (Xu et al. 2023) with a lexical scorer in
place of a trained one.

Why: a small reader copies the answer of the nearest statement that looks like the question, so other
subjects' statements inside the retrieved passages mislead it; reading the best sentences of more passages
works better than whole passages (measured on the fictional world, eval/results/world/NOTES.md), and a
shorter context is also cheaper to prefill.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from rag.errors import BadInputError
from rag.tokenize import DocFreq, Tokenizer
from rag.types import Passage

if TYPE_CHECKING:  # pragma: no cover
    from rag.readers.prompts import Demo

# a sentence ends at . ! or ? followed by space; "Q: ...? A: ..." (FAQ lines of the fictional world) stays one
# sentence and starts a new one
_SPLIT = re.compile(r"(?<=[.!?])\s+(?!A: )(?=\S)|\s+(?=Q: )")


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage text (whitespace normalized). Abbreviations such as "U.S. Army" are split too:
    the scorer only needs units of about a sentence."""
    text = " ".join(text.split())
    return [s for s in _SPLIT.split(text) if s] if text else []


@lru_cache(maxsize=1)
def _default_tokenizer() -> Tokenizer:
    return Tokenizer()


def select_sentences(question: str, passages: Sequence[Passage], n: int, df: DocFreq | None = None) -> list[Passage]:
    """The n best-matching sentences of `passages` (best first), each left in its passage in text order."""
    if n <= 0:
        raise BadInputError(f"the number of sentences to keep must be positive, got {n}")
    tok = df.tokenizer if df is not None else _default_tokenizer()
    cands = [(i, j, s) for i, p in enumerate(passages) for j, s in enumerate(split_sentences(p.text))]
    if len(cands) <= n:
        return [p for p in passages if p.text.strip()]
    q = sorted(set(tok.tokenize(question)))
    toks = [set(t) for t in tok.tokenize_batch([s for _, _, s in cands])]
    if df is not None:
        N, counts = df.n_docs, df.lookup(q)
    else:
        N, counts = len(cands), [sum(1 for x in toks if t in x) for t in q]
    weight = {t: math.log(1 + N / (c + 1)) for t, c in zip(q, counts)}
    score = [sum(weight[t] for t in x.intersection(weight)) for x in toks]
    best = sorted(range(len(cands)), key=lambda c: (-score[c], cands[c][0], cands[c][1]))[:n]
    keep: dict[int, set[int]] = {}
    for c in best:
        keep.setdefault(cands[c][0], set()).add(cands[c][1])
    return [replace(p, text=" ".join(s for (pi, j, s) in cands if pi == i and j in keep[i]))
            for i, p in enumerate(passages) if i in keep]


def select_batch(questions: Sequence[str], passages_per_question: Sequence[Sequence[Passage]], n: int,
                 df: DocFreq | None = None) -> list[list[Passage]]:
    """select_sentences for each question; one corpus lookup for every question token of the batch."""
    if df is not None:
        tok = df.tokenizer
        stems = sorted({t for q in questions for t in tok.tokenize(q)})
        table = dict(zip(stems, df.lookup(stems)))
        df = DocFreq(df.n_docs, lambda ts: [table[t] if t in table else 0 for t in ts], tok)
    return [select_sentences(q, ps, n, df) if ps else [] for q, ps in zip(questions, passages_per_question)]


def select_demos(demos: Sequence["Demo"], n: int, df: DocFreq | None = None) -> list["Demo"]:
    """Demonstrations with their own passage narrowed like the questions' passages (a passage left with no
    sentence becomes None)."""
    out = []
    for d in demos:
        if d.passage is not None:
            (kept,) = select_batch([d.question], [[d.passage]], n, df)
            d = replace(d, passage=kept[0] if kept else None)
        out.append(d)
    return out

