"""Typed records that flow between stages: corpus -> index -> retrieve -> read -> score."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One source article or record, before it is split into passages."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Passage:
    """A ~100-word window of a document; `pid` is stable: f"{doc_id}#{position}"."""

    pid: str
    doc_id: str
    title: str
    text: str
    position: int = 0


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: `row` is the passage's row in its store, `rank` starts at 1."""

    pid: str
    score: float
    rank: int
    row: int = -1


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    answers: tuple[str, ...]
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Prediction:
    qid: str
    answer: str
    prompt_tokens: int = 0
    passages: tuple[str, ...] = ()  # pids given to the reader
    new_tokens: int = 0  # tokens the reader generated
    passages_dropped: int = 0  # retrieved passages left out to fit the model's context
    passages_truncated: int = 0  # passages cut short to fit (0 or 1: only the last one kept is cut)
    gold_answer: str | None = None  # the best-scoring gold alias, when the reader scored the golds
    gold_logprob: float | None = None  # its summed log-probability after the same prompt
    gold_tokens: int | None = None  # its length in the reader's tokens


@dataclass(frozen=True)
class Mention:
    """An entity mention: character offsets [start, end) into the linked text."""

    start: int
    end: int
    surface: str
    entity: str
    score: float = 1.0
