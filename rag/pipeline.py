"""One pipeline from typed reader settings to answers: `rag ask`, the evaluation runner and its Ray reader actors
all answer through it, so a question is asked the same way everywhere.

    ReaderConfig ──open_reader──> Reader
    Pipeline.open(cfg, seed, exclude, demo_retriever, doc_freq, k)
        demonstrations   the built-in ones, or `shots` drawn (seeded) from cfg.demos, each with the first
                         passage of `demo_retriever` holding its answer; narrowed to cfg.sentences sentences
    retrieve(retriever, questions, depth) -> [Retrieved(hits, passages)]      best first, one store read
    pipeline.show(questions, passages)  -> the top-k passages, narrowed to the cfg.sentences best sentences
    pipeline.read(questions, shown)     -> fit each prompt to the context, reader.generate_batch -> Predictions
    pipeline.answer(questions, passages=None) = read(questions, show(questions, passages))

Closed-book is the same call with no passages (None, or an empty list per question). `show` needs no model,
so a Ray driver prepares prompts' passages while the reader actors (`with_reader`) read.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Sequence

from rag.errors import BadInputError
from rag.readers import DEFAULT_BACKEND, DEFAULT_MODEL
from rag.types import Hit, Passage, Prediction, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.readers import Choice, Demo, PromptFormat, Reader
    from rag.retrievers.base import Retriever
    from rag.tokenize import DocFreq


@dataclass(frozen=True)
class ReaderConfig:
    """How questions are read: the model and backend, the prompt, and the decoding limits."""

    model: str | None = DEFAULT_MODEL  # a named model, a .gguf path, a folder / hub id; None: a server's only model
    backend: str = DEFAULT_BACKEND  # a rag.readers.READERS name ("fake" for tests), or "auto": chosen per machine
    prompt_format: str | None = None  # None: the named model's default
    shots: int = 3
    demos: Path | None = None  # QA file to draw demonstrations from (seeded); None: the built-in ones
    max_new_tokens: int = 16
    n_ctx: int | None = None
    n_threads: int | None = None  # CPU threads of a local backend (llama-cpp, torch, ct2); None: every core
    device: str = "auto"
    batch_size: int = 8  # prompts per generate_batch call
    sentences: int | None = None  # show only the N sentences of the top-k passages that best match the question
    # score the gold answers after each prompt (their log-probability); "auto": where the backend can
    score_gold: bool | str = "auto"
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for the backend's load()


def resolve_backend(cfg: ReaderConfig) -> "tuple[ReaderConfig, Choice | None]":
    """`cfg` with backend "auto" replaced by the backend and precision this machine runs fastest
    (rag.readers.auto.choose_backend), and that Choice; other backends are returned as they are, with None.
    An explicit `precision` option wins over the chosen one."""
    if cfg.backend != "auto":
        return cfg, None
    from rag.readers.auto import check_model_ref, choose_backend

    if cfg.model is not None:
        check_model_ref(cfg.model)
    choice = choose_backend(cfg.model, cfg.device)
    options = {**choice.load_options(), **cfg.options}
    if choice.backend not in ("torch", "ct2"):
        options.pop("precision", None)
    return replace(cfg, backend=choice.backend, options=options), choice


def open_reader(cfg: ReaderConfig) -> "Reader":
    """The reader `cfg` describes, opened in this process (backend "auto" resolved first)."""
    from rag.readers import load_reader

    cfg, choice = resolve_backend(cfg)
    reader = _load(cfg, load_reader)
    if choice is not None:
        reader.auto_choice = choice
    return reader


def _load(cfg: ReaderConfig, load_reader) -> "Reader":
    options = {"device": cfg.device, **cfg.options}
    if cfg.n_ctx is not None:
        options["n_ctx"] = cfg.n_ctx
    if cfg.n_threads is not None:
        from rag.readers import thread_option

        options.update(thread_option(cfg.backend, cfg.n_threads, what="reader.n_threads"))
    return load_reader(cfg.model, backend=cfg.backend, **options)


def prompt_format(cfg: ReaderConfig, reader: "Reader | None" = None) -> "PromptFormat":
    """cfg.prompt_format, else the named model's measured default (a served model: the reader's), else kandpal."""
    from rag.readers import FORMATS, default_format

    if cfg.prompt_format:
        return FORMATS.get(cfg.prompt_format)
    if cfg.model is None and reader is not None:
        return FORMATS.get(reader.prompt_format)
    return FORMATS.get(default_format(cfg.model))


def demonstrations(cfg: ReaderConfig, seed: int = 0, exclude: Collection[Question] = (),
                   retriever: "Retriever | None" = None) -> list["Demo"]:
    """cfg.shots demonstrations: the built-in ones, or drawn from cfg.demos (seeded, never an `exclude`d
    question; with a `retriever` each gets the first retrieved passage that holds its answer)."""
    from rag.readers import BUILTIN_DEMOS, draw_demos

    if cfg.demos is not None:
        from rag.qa import load_questions

        return draw_demos(load_questions(cfg.demos), cfg.shots, seed=seed, exclude=exclude, retriever=retriever)
    if cfg.shots > len(BUILTIN_DEMOS):
        raise BadInputError(f"there are {len(BUILTIN_DEMOS)} built-in demonstrations; for {cfg.shots} shots draw "
                            f"them from a QA file (reader.demos in a config, --demos PATH on the command line)")
    return list(BUILTIN_DEMOS[: cfg.shots])


@dataclass(frozen=True)
class Retrieved:
    """One question's retrieval: hits and their passages, best first."""

    hits: tuple[Hit, ...]
    passages: tuple[Passage, ...]


def retrieve(retriever: "Retriever", questions: Sequence[str], depth: int) -> list[Retrieved]:
    """The top-`depth` hits of each question, with their passages read from the store in one batch."""
    hits = retriever.search_batch(list(questions), depth)
    flat = retriever.passages([h for hs in hits for h in hs])
    out, at = [], 0
    for hs in hits:
        out.append(Retrieved(tuple(hs), tuple(flat[at : at + len(hs)])))
        at += len(hs)
    return out


@dataclass(frozen=True)
class Pipeline:
    """Demonstrations, prompt format and decoding settings bound to a reader (None on a Ray driver)."""

    cfg: ReaderConfig
    demos: tuple["Demo", ...]  # already narrowed to cfg.sentences sentences when that is set
    fmt: "PromptFormat"
    reader: "Reader | None" = None
    k: int | None = None  # passages shown per question (the first k given); None: all given
    doc_freq: "DocFreq | None" = None  # corpus statistics for sentence selection; None: counted over the candidates

    @classmethod
    def open(cls, cfg: ReaderConfig, *, reader: "Reader | None" = None, open_model: bool = True, seed: int = 0,
             exclude: Collection[Question] = (), demo_retriever: "Retriever | None" = None,
             doc_freq: "DocFreq | None" = None, k: int | None = None) -> "Pipeline":
        """Open cfg's reader (unless `reader` is given, or `open_model` is False) and draw the demonstrations."""
        if reader is None and open_model:
            reader = open_reader(cfg)
        fmt = prompt_format(cfg, reader)
        demos = demonstrations(cfg, seed=seed, exclude=exclude, retriever=demo_retriever)
        if cfg.sentences is not None:  # demonstrations show their own passage the way the questions' are shown
            from rag.readers.compress import select_demos

            demos = select_demos(demos, cfg.sentences, doc_freq)
        return cls(cfg, tuple(demos), fmt, reader, k, doc_freq)

    def with_reader(self, reader: "Reader") -> "Pipeline":
        return replace(self, reader=reader)

    def show(self, questions: Sequence[Question], passages: Sequence[Sequence[Passage]] | None) -> list[list[Passage]] | None:
        """What the reader is shown of each question's passages (best first): the first k, and with
        cfg.sentences only the best sentences of those. None (closed-book) stays None."""
        if passages is None:
            return None
        top = [list(ps[: self.k] if self.k is not None else ps) for ps in passages]
        if self.cfg.sentences is not None:
            from rag.readers.compress import select_batch

            top = select_batch([q.question for q in questions], top, self.cfg.sentences, self.doc_freq)
        return top

    def read(self, questions: Sequence[Question], shown: Sequence[Sequence[Passage]] | None) -> list[Prediction]:
        """Fit each prompt to the context and answer (greedy, to the first newline); `shown` from `show`."""
        from rag.readers import answer

        if self.reader is None:
            raise RuntimeError("this pipeline has no reader (a Ray driver's); call with_reader first")
        return answer(self.reader, questions, shown, demos=list(self.demos), prompt_format=self.fmt,
                      max_new_tokens=self.cfg.max_new_tokens, batch_size=self.cfg.batch_size,
                      score_gold=self.cfg.score_gold)

    def answer(self, questions: Sequence[Question], passages: Sequence[Sequence[Passage]] | None = None) -> list[Prediction]:
        return self.read(questions, self.show(questions, passages))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
