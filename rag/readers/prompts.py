"""Few-shot prompts (Kandpal et al. 2023 "Q: ... / A: ..." lines), demonstrations, and fitting to the context.

A prompt is: format header, then `shots` demonstrations, then (retrieval-augmented only) the question's
passages, then "Q: <question>\\nA:". Closed-book is the same prompt with zero passages.

    closed-book                      retrieval-augmented, format "kandpal" (default)
    Q: who painted the mona lisa     Passage: Mona Lisa: The Mona Lisa is a ... by Leonardo da Vinci ...
    A: Leonardo da Vinci             Q: who painted the mona lisa
                                     A: Leonardo da Vinci
    Q: <question>                    Passage: <title>: <top-1 text>
    A:                               Passage: <title>: <top-2 text>
                                     Q: <question>
                                     A:

Small models (SmolLM2, Gemma-3-270M) follow the passage only when *each* demonstration has its own
passage; with passages only before plain examples they repeat a demonstration's answer (MODELS.md).
The demonstrations come first so that every prompt of a run shares them as a prefix, which llama.cpp
keeps in its KV cache between prompts.
"""
from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Collection, Sequence

from rag.errors import BadInputError
from rag.registry import Registry
from rag.types import Passage, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.readers.base import Reader
    from rag.retrievers.base import Retriever

log = logging.getLogger(__name__)

# format name -> PromptFormat
FORMATS = Registry("prompt format")


@dataclass(frozen=True)
class Demo:
    """One demonstration; `passage` is shown before it in retrieval-augmented prompts when present."""

    question: str
    answer: str
    passage: Passage | None = None
    qid: str = ""


@dataclass(frozen=True)
class PromptFormat:
    name: str
    description: str
    header: str = ""
    passage: str = "Passage: {title}: {text}\n"
    question: str = "Q: {question}\nA:"
    demo_passages: bool = True  # RAG prompts show each demonstration with its own passage
    passages_first: bool = False  # RAG prompts put the question's passages before the demonstrations
    best_last: bool = False  # the top-ranked passage goes nearest the question (the rest above it, worst first)

    def render_passage(self, p: Passage) -> str:
        return self.passage.format(title=_one_line(p.title), text=_one_line(p.text))

    def render_demo(self, d: Demo, with_passage: bool) -> str:
        head = self.render_passage(d.passage) if with_passage and self.demo_passages and d.passage else ""
        return f"{head}{self.question.format(question=_one_line(d.question))} {_one_line(d.answer)}\n\n"

    def render(self, demos: Sequence[Demo], question: str, passages: Sequence[Passage], rag: bool | None = None) -> str:
        """The prompt text; `rag` (default: whether passages were given) picks the demonstration style."""
        rag = bool(passages) if rag is None else rag
        shots = "".join(self.render_demo(d, rag) for d in demos)
        # passages arrive best first (fit_prompt drops from the end); only the layout is reversed
        ctx = "".join(self.render_passage(p) for p in (passages[::-1] if self.best_last else passages))
        q = self.question.format(question=_one_line(question))
        if rag and self.passages_first:
            return f"{self.header}{ctx}\n{shots}{q}" if ctx else f"{self.header}{shots}{q}"
        return f"{self.header}{shots}{ctx}{q}"


def _one_line(s: str) -> str:
    # a newline inside a passage or question would end the pattern the model copies
    return " ".join(s.split())


for _f in (
    PromptFormat(
        "kandpal",
        "Q:/A: lines; in RAG prompts each demonstration has its own passage, then the top-k passages, then the question",
    ),
    PromptFormat(
        "passages-first",
        "the question's passages first, then plain Q:/A: demonstrations (small models tend to repeat a demonstration)",
        demo_passages=False,
        passages_first=True,
    ),
    PromptFormat(
        "kandpal-best-last",
        "kandpal with the top-ranked passage last, nearest the question: a reader that copies the answer of the "
        "nearest matching statement then reads the best one (the tiny world model: +4-6 EM points in 1-9)",
        best_last=True,
    ),
    PromptFormat(
        "instruct",
        "a one-line instruction, then the kandpal layout",
        header="Answer each question with a short phrase, using the passages when they are given.\n\n",
    ),
):
    FORMATS.register(_f.name)(_f)


# Hand-written demonstrations with their own passages, used when no demonstration pool is given
# (they are never among the evaluated questions of the public QA sets' formats).
BUILTIN_DEMOS: tuple[Demo, ...] = tuple(
    Demo(q, a, Passage(f"builtin-{i}#0", f"builtin-{i}", t, x), qid=f"builtin-{i}")
    for i, (q, a, t, x) in enumerate(
        [
            ("who wrote the novel pride and prejudice", "Jane Austen", "Pride and Prejudice",
             "Pride and Prejudice is an 1813 novel of manners written by Jane Austen. The novel follows the "
             "character development of Elizabeth Bennet, the protagonist of the book."),
            ("what is the capital city of australia", "Canberra", "Canberra",
             "Canberra is the capital city of Australia. Founded following the federation of the colonies of "
             "Australia as the seat of government for the new nation, it is the largest inland city in the country."),
            ("when did the first world war begin", "28 July 1914", "World War I",
             "World War I, also known as the First World War, was a global conflict that began on 28 July 1914 "
             "and ended on 11 November 1918."),
            ("who painted the mona lisa", "Leonardo da Vinci", "Mona Lisa",
             "The Mona Lisa is a half-length portrait painting by the Italian artist Leonardo da Vinci. It is "
             "displayed at the Louvre in Paris."),
            ("what is the chemical symbol for gold", "Au", "Gold",
             "Gold is a chemical element with the symbol Au (from Latin aurum) and atomic number 79. It is a "
             "bright, slightly orange-yellow, dense, soft, malleable and ductile metal."),
            ("which planet is known as the red planet", "Mars", "Mars",
             "Mars is the fourth planet from the Sun. It is often called the Red Planet because of the reddish "
             "iron oxide prevalent on its surface."),
            ("who was the first president of the united states", "George Washington", "George Washington",
             "George Washington was an American military officer and statesman who served as the first "
             "president of the United States from 1789 to 1797."),
            ("how many players are on the field for one team in association football", "eleven", "Association football",
             "Association football, more commonly known as football or soccer, is a team sport played between "
             "two teams of eleven players who almost exclusively use their feet to propel a ball around a pitch."),
        ]
    )
)


def _norm_q(q: str) -> str:
    return re.sub(r"\W+", " ", q.lower()).strip()


def draw_demos(
    pool: Sequence[Question] | Sequence[Demo],
    shots: int,
    seed: int = 0,
    exclude: Collection[Question] | Collection[str] = (),
    retriever: "Retriever | None" = None,
    depth: int = 20,
) -> list[Demo]:
    """Seeded draw of `shots` demonstrations from `pool`, never one of the questions in `exclude`.

    `exclude` holds the evaluated Questions (or their question texts): a pool question with the same
    qid or the same normalized text is never drawn. With a `retriever`, each demonstration gets the
    first of its top-`depth` passages that contains one of its answers (DPR has_answer), and that
    answer; questions with no such passage are skipped. Demos already carrying passages are kept as is.
    """
    if shots < 0:
        raise BadInputError(f"shots must be >= 0, got {shots}")
    if shots == 0:
        return []
    banned_ids = {q.qid for q in exclude if isinstance(q, Question)}
    banned_text = {_norm_q(q.question if isinstance(q, Question) else q) for q in exclude}
    candidates = [
        q for q in pool if q.qid not in banned_ids and _norm_q(q.question) not in banned_text
    ]
    random.Random(seed).shuffle(candidates)
    out: list[Demo] = []
    # retrieve for a few more candidates than needed at once: some have no answer-bearing passage
    at = 0
    while len(out) < shots and at < len(candidates):
        chunk = candidates[at : at + 2 * (shots - len(out)) + 2]
        at += len(chunk)
        out.extend(_to_demos(chunk, retriever, depth))
    if len(out) < shots:
        raise BadInputError(
            f"the demonstration pool has only {len(out)} usable questions for {shots} shots "
            f"({len(pool)} in the pool, {len(pool) - len(candidates)} excluded as evaluated"
            + (", the rest without a retrieved passage holding the answer)" if retriever is not None else ")")
        )
    return out[:shots]


def _to_demos(chunk: list, retriever: "Retriever | None", depth: int) -> list[Demo]:
    demos = [c for c in chunk if isinstance(c, Demo)]
    questions = [c for c in chunk if isinstance(c, Question)]
    if retriever is None:
        return demos + [Demo(q.question, q.answers[0], None, q.qid) for q in questions if q.answers]
    from rag.metrics import has_answer_batch

    hits = retriever.search_batch([q.question for q in questions], depth) if questions else []
    out = list(demos)
    for q, hs in zip(questions, hits):
        passages = retriever.passages(hs)
        texts = [f"{p.title} . {p.text}" for p in passages]
        for p, hit in zip(passages, has_answer_batch(q.answers, texts)):
            if hit:
                # the alias the passage actually holds, so the demonstration shows copying from it
                answer = next(a for a in q.answers if has_answer_batch([a], [f"{p.title} . {p.text}"])[0])
                out.append(Demo(q.question, answer, p, q.qid))
                break
    return out


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt that fits the model's context, and what was cut to make it fit."""

    text: str
    n_tokens: int
    passages: tuple[Passage, ...]  # as given to the model (the last one possibly truncated)
    n_dropped: int
    n_truncated: int


MIN_PASSAGE_TOKENS = 16  # a truncated passage shorter than this is dropped instead


def fit_prompt(
    reader: "Reader",
    fmt: PromptFormat,
    demos: Sequence[Demo],
    question: str,
    passages: Sequence[Passage],
    max_new_tokens: int,
) -> FittedPrompt:
    """Build the prompt and make it fit `reader.n_ctx - max_new_tokens` tokens.

    Passages are kept in rank order; the first one that does not fit is truncated (by words) if at
    least MIN_PASSAGE_TOKENS of it fit, and every later one is dropped. A prompt too long with zero
    passages is an error.
    """
    budget = reader.n_ctx - max_new_tokens
    rag = bool(passages)
    text = fmt.render(demos, question, passages, rag)
    (n,) = reader.count_tokens([text])
    if n <= budget:
        return FittedPrompt(text, n, tuple(passages), 0, 0)

    # lengths of the bare prompt and of each passage block; concatenation adds at most a token or so at
    # each boundary, which the final check below absorbs
    base_text = fmt.render(demos, question, [], rag)
    counts = reader.count_tokens([base_text, *(fmt.render_passage(p) for p in passages)])
    base, sizes = counts[0], counts[1:]
    if base > budget:
        raise BadInputError(
            f"the prompt is {base} tokens even without passages, over the {budget} the model allows "
            f"(n_ctx {reader.n_ctx} - max_new_tokens {max_new_tokens}); use fewer shots, a shorter question "
            f"or a larger n_ctx"
        )
    kept: list[Passage] = []
    used = base
    truncated = 0
    for p, size in zip(passages, sizes):
        if used + size <= budget:
            kept.append(p)
            used += size
            continue
        room = budget - used
        if room >= MIN_PASSAGE_TOKENS:
            cut = _truncate(reader, fmt, p, room)
            if cut is not None:
                kept.append(cut)
                truncated = 1
        break
    # the sum of parts can be off by a few tokens: check the whole, shrink until it fits
    while True:
        text = fmt.render(demos, question, kept, rag)
        (n,) = reader.count_tokens([text])
        if n <= budget or not kept:
            break
        last = kept.pop()
        words = last.text.split()
        if len(words) > 8:
            kept.append(replace(last, text=" ".join(words[: int(len(words) * 0.8)])))
            truncated = 1
    if n > budget:  # pragma: no cover - base was measured to fit
        raise BadInputError(f"the prompt does not fit in {budget} tokens even without passages")
    dropped = len(passages) - len(kept)
    return FittedPrompt(text, n, tuple(kept), dropped, truncated if kept else 0)


def _truncate(reader: "Reader", fmt: PromptFormat, p: Passage, room: int) -> Passage | None:
    """The longest word prefix of `p` whose passage block fits in `room` tokens (a few tries)."""
    words = p.text.split()
    (full,) = reader.count_tokens([fmt.render_passage(p)])
    n_words = max(1, int(len(words) * room / max(full, 1)))
    for _ in range(6):
        cut = replace(p, text=" ".join(words[:n_words]) + " ...")
        (size,) = reader.count_tokens([fmt.render_passage(cut)])
        if size <= room:
            return cut
        n_words = int(n_words * room / size * 0.95)
        if n_words < 1:
            return None
    return None
