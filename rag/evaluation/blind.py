"""The subject-blind control: each question asked closed-book with its linked subject span replaced by a placeholder.

    "In what country is Bitchū-Kawamo Station?"  ->  "In what country is this entity?"

What a model still gets right blind it gets from the relation's answer prior and the question's other words, not
from knowing the subject; a count slope that survives blinding is not knowledge of the subject (issue 20, 5c).

The span is the counts artifact's `q_mention` (rag.counts.QuestionCount): the question text behind the chosen
question entity, or the subject phrase when the question side was counted from the surface. Every occurrence of it
(case-insensitive) is replaced by `controls.placeholder` (default "this entity": a phrase no model reads as a name,
unlike "X"). Other entities in the question stay. Questions without a span (unlinked, counts imported from a table,
counts of format 1) or whose span is not in the question text are not asked blind; they are counted, with why, in
blind.json, which the report reads:

    blind.json  {"format": 1, "placeholder": str, "n_selected": int, "n_blinded": int,
                 "unmatched": {why: n}, "examples": [{"qid", "question", "mention", "why"}]}   (at most 20 examples)

Records of this mode are ordinary EvalRecords with mode "closed-blind" whose `question` is the blinded text; the
mode's identity (placeholder, format) refuses a resume that would blind differently.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from rag.types import Question

BLIND = "closed-blind"  # the mode of subject-blind records
FILE = "blind.json"
FORMAT = 1
NO_MENTION, NOT_FOUND = "no linked subject span", "span not found in the question"
_EXAMPLES = 20


def blind_question(question: str, span: str | None, placeholder: str) -> str | None:
    """`question` with every occurrence of `span` (case-insensitive) replaced by `placeholder`; None when the
    span is empty or not in the question."""
    if not span or not span.strip():
        return None
    pattern = re.compile(re.escape(span.strip()), re.IGNORECASE)
    if not pattern.search(question):
        return None
    return pattern.sub(lambda _: placeholder, question)


@dataclass
class BlindSet:
    """The blinded questions of a run's selection, and the ones that could not be blinded."""

    placeholder: str
    questions: dict[str, Question]  # qid -> the blinded question (same qid, answers, meta + "blind_span")
    unmatched: list[dict] = field(default_factory=list)  # {qid, question, mention, why}
    n_selected: int = 0

    @classmethod
    def of(cls, questions: Sequence[Question], mentions: dict[str, str | None], placeholder: str) -> "BlindSet":
        """`mentions`: qid -> the counts' q_mention (None or missing: none)."""
        out, unmatched = {}, []
        for q in questions:
            span = mentions.get(q.qid)
            text = blind_question(q.question, span, placeholder)
            if text is None:
                unmatched.append({"qid": q.qid, "question": q.question, "mention": span,
                                  "why": NOT_FOUND if span and span.strip() else NO_MENTION})
            else:
                out[q.qid] = replace(q, question=text, meta={**q.meta, "blind_span": span})
        return cls(placeholder, out, unmatched, len(questions))

    def to_json(self) -> dict:
        return {"format": FORMAT, "placeholder": self.placeholder, "n_selected": self.n_selected,
                "n_blinded": len(self.questions), "unmatched": dict(Counter(u["why"] for u in self.unmatched)),
                "examples": self.unmatched[:_EXAMPLES]}

    def write(self, folder: str | Path) -> None:
        from rag.artifacts import write_json_atomic

        write_json_atomic(Path(folder) / FILE, self.to_json())


def identity(placeholder: str) -> dict:
    """What the blind mode's records depend on beyond the run identity."""
    return {"placeholder": placeholder, "span": "counts q_mention, every occurrence", "format": FORMAT}


def subject_mentions(counts_folder: str | Path) -> dict[str, str | None]:
    """qid -> q_mention of a counts folder (rag.counts.load_counts; format-1 counts have none)."""
    from rag.counts import load_counts

    rows, _ = load_counts(counts_folder)
    return {r.qid: r.q_mention for r in rows}


def read_blind(folder: str | Path) -> dict | None:
    """blind.json of a run folder, or None when the run never asked for the blind mode."""
    import json

    path = Path(folder) / FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
