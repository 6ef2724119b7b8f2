"""Answering questions: closed-book and retrieval-augmented through one function.

    answer(reader, questions, passages_per_question=None)   # None or [] per question -> closed-book
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from rag.errors import BadInputError
from rag.readers.base import ScoringNotSupported
from rag.readers.prompts import BUILTIN_DEMOS, FORMATS, Demo, FittedPrompt, PromptFormat, fit_prompt
from rag.regex_golds import linking_answers
from rag.types import Passage, Prediction, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.readers.base import Reader

log = logging.getLogger(__name__)

def wants_scoring(reader: "Reader", score_gold: bool | str) -> bool:
    """score_gold True: always (a backend that cannot is an error); "auto": unless this reader refused once."""
    if score_gold not in (True, False, "auto"):
        raise BadInputError(f"score_gold must be true, false or auto, got {score_gold!r}")
    return score_gold is True or (score_gold == "auto" and not getattr(reader, "scoring_refused", False))


def answer(
    reader: "Reader",
    questions: Sequence[Question],
    passages_per_question: Sequence[Sequence[Passage]] | None = None,
    demos: Sequence[Demo] | None = None,
    prompt_format: str | PromptFormat | None = None,
    max_new_tokens: int = 16,
    batch_size: int = 8,
    progress: bool = False,
    score_gold: bool | str = False,
) -> list[Prediction]:
    """One Prediction per question, in order.

    `passages_per_question[i]` are question i's passages, best first (title + text go into the prompt);
    an empty list, or None for all, answers closed-book with the same prompt minus the passages.
    `prompt_format` defaults to the reader's (for a named model, the format chosen for it by measurement).
    `demos` default to the first 3 built-in demonstrations; pass `draw_demos(...)`
    for demonstrations drawn from a held-out pool. Each Prediction records the prompt length, the pids
    actually shown, and how many passages were dropped or truncated to fit the context.
    `score_gold` (True, False or "auto": where the backend can) also scores each question's gold answers after
    the same prompt (Prediction.gold_*; rag.readers.base.Reader.generate_scored_batch).
    """
    prompt_format = prompt_format or reader.prompt_format
    fmt = FORMATS.get(prompt_format) if isinstance(prompt_format, str) else prompt_format
    demos = list(BUILTIN_DEMOS[:3] if demos is None else demos)
    if passages_per_question is None:
        passages_per_question = [[] for _ in questions]
    if len(passages_per_question) != len(questions):
        raise BadInputError(
            f"got {len(questions)} questions but {len(passages_per_question)} passage lists; pass one list per question"
        )
    for q in questions:
        if not q.question.strip():
            raise BadInputError(f"question {q.qid!r} is empty")

    fitted: list[FittedPrompt] = [
        fit_prompt(reader, fmt, demos, q.question, list(ps), max_new_tokens)
        for q, ps in zip(questions, passages_per_question)
    ]
    n_cut = sum(1 for f in fitted if f.n_dropped or f.n_truncated)
    if n_cut:
        log.info("%d of %d prompts had passages dropped or truncated to fit n_ctx=%d", n_cut, len(fitted), reader.n_ctx)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(fitted), desc="answering", unit="q", leave=False)
    gens = []
    scoring = wants_scoring(reader, score_gold)
    for start in range(0, len(fitted), batch_size):
        chunk = fitted[start : start + batch_size]
        texts = [f.text for f in chunk]
        if scoring:
            golds = [linking_answers(q) for q in questions[start : start + batch_size]]
            try:
                gens.extend(reader.generate_scored_batch(texts, golds, max_new_tokens))
                continue
            except ScoringNotSupported as e:
                if score_gold is True:
                    raise
                log.warning("%s; gold answers are not scored in this run", e)
                reader.scoring_refused = True  # asked once per reader
                scoring = False
        gens.extend(reader.generate_batch(texts, max_new_tokens))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()

    return [
        Prediction(
            qid=q.qid,
            answer=g.text,
            prompt_tokens=f.n_tokens,
            passages=tuple(p.pid for p in f.passages),
            new_tokens=g.new_tokens,
            passages_dropped=f.n_dropped,
            passages_truncated=f.n_truncated,
            gold_answer=g.gold.answer if g.gold else None,
            gold_logprob=g.gold.logprob if g.gold else None,
            gold_tokens=g.gold.tokens if g.gold else None,
        )
        for q, f, g in zip(questions, fitted, gens)
    ]
