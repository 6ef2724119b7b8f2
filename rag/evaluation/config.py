"""Typed configuration of an evaluation run, parsed once from a YAML preset plus command-line overrides.

A preset (configs/*.yaml) looks like:

    name: nq-open
    qa: {path: ../shared/data/qa/nq-open.test.jsonl}
    counts: indexes/counts-nq-open-wiki-both
    reader: {model: qwen2.5-coder-0.5b, backend: auto, shots: 3}
    retrievers:
      - {name: bm25, index: indexes/wiki-both-bm25}
      - {name: dense, index: indexes/wiki-both-dense}
    k: 5
    per_bucket: 50

Relative paths are relative to the working directory the command runs in (the repository root for the
shipped presets). Unknown keys and wrong types are errors naming the key and the file.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.buckets import DEFAULT_EDGES, Buckets
from rag.config import from_dict
from rag.engine.base import EngineConfig
from rag.errors import BadInputError
from rag.pipeline import ReaderConfig

METRICS = ("em", "f1", "contains", "logprob")  # logprob: the gold answer's log-probability (reader.score_gold)
DEFAULT_RECALL_KS = (1, 5, 20, 100)


@dataclass(frozen=True)
class QAConfig:
    path: Path
    format: str | None = None  # a rag.qa.FORMATS name; None: guessed from the path
    limit: int | None = None  # the first N questions of the file only (before sampling)
    # "string" or "regex" (golds are patterns: EM, contains and has_answer in rag.metrics' regex mode);
    # None: regex for the curatedtrec format or a file named *curatedtrec*, string otherwise (rag.qa)
    match_type: str | None = None


@dataclass(frozen=True)
class RetrieverConfig:
    name: str  # label in records and reports, e.g. "bm25"; "closed" is reserved
    index: Path  # an index folder (rag index build)
    passages: Path | None = None  # passage store; None: the one recorded in the index manifest
    search: dict[str, Any] = field(default_factory=dict)  # query-time options (Retriever.SEARCH_OPTIONS)


@dataclass(frozen=True)
class AdaptiveConfig:
    retriever: str | None = None  # which retriever the policy uses; None: the first
    train_fraction: float = 0.5  # seeded split: learn the threshold on this share, report on the rest
    unlinked: str = "learn"  # unlinked questions: "retrieve", "closed", or "learn" (whichever is better on train)


@dataclass(frozen=True)
class ControlsConfig:
    """Controls for what a count measures (rag.evaluation.controls); the analysis itself always runs."""

    subject_blind: bool = False  # also answer each question closed-book with its subject span blinded (mode closed-blind)
    placeholder: str = "this entity"  # what replaces the subject span in the blinded question
    templates: Path | None = None  # {relation: "... [X] ..."} JSON: relations of a template-generated QA set
    min_group: int = 20  # questions a relation (answer type) needs for its own slope
    # counts built with `rag counts build --exclude-countries` for the same QA file: closed-book's slope is refitted on them
    exclude_countries_counts: Path | None = None


@dataclass(frozen=True)
class EvalConfig:
    qa: QAConfig
    counts: Path  # counts folder (rag counts build) made for the same QA file
    retrievers: list[RetrieverConfig]
    # keep only questions whose count was obtained this way: "entity" (both sides entity-linked, the paper's
    # count) or "surface" (a subject phrase or answer string found in the text); None: every question
    count_method: str | None = None
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    name: str = "eval"
    k: int = 5  # passages given to the reader
    recall_ks: list[int] = field(default_factory=lambda: list(DEFAULT_RECALL_KS))
    buckets: list[int] = field(default_factory=lambda: list(DEFAULT_EDGES))  # lower edges of the count buckets
    per_bucket: int | None = None  # stratified sample size per bucket; None: every question
    # a time budget ("90m", "2h"): per-bucket sizes are planned from the reader's measured cost (rag.evaluation.budget)
    # and the run stops cleanly when the budget is spent; per_bucket is then ignored
    budget: str | None = None
    allocation: str = "slope"  # how a budget is spread over buckets: slope (Neyman for the slope) or equal
    seed: int = 0
    metric: str = "em"  # the accuracy shown in tables and plots: em, f1 or contains
    batch_size: int = 32  # questions retrieved, answered and written (fsync) together; the resume granularity
    n_boot: int = 2000  # bootstrap resamples per confidence interval
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    out: Path | None = None  # run folder; None: runs/<name>
    # where batch answer generation runs: {kind: local | ray, address, workers}; never changes the records
    engine: EngineConfig = field(default_factory=EngineConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    # run although the counts and an index were built over different passage stores (recorded in the manifest and
    # the summary); by default such a run is refused, since its buckets would describe another corpus
    allow_store_mismatch: bool = False

    def __post_init__(self):
        _validate(self)

    @property
    def depth(self) -> int:
        """Passages retrieved per question: enough for reading and for every recall@k."""
        return max(self.k, *self.recall_ks)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path("runs") / self.name


def answer_metric(metric: str) -> str:
    """The right/wrong measure behind `metric`: itself, or EM when the metric is the gold log-probability."""
    return "em" if metric == "logprob" else metric


def _validate(c: EvalConfig) -> None:
    def bad(msg: str):
        raise BadInputError(f"config: {msg}")

    if c.k <= 0:
        bad(f"k must be positive, got {c.k}")
    if not c.recall_ks or any(k <= 0 for k in c.recall_ks):
        bad(f"recall_ks must be positive integers, got {c.recall_ks}")
    if c.per_bucket is not None and c.per_bucket <= 0:
        bad(f"per_bucket must be positive (or null for every question), got {c.per_bucket}")
    if c.budget is not None:
        from rag.evaluation.budget import parse_duration

        parse_duration(c.budget)
    if c.allocation not in ("slope", "equal"):
        bad(f"allocation must be slope or equal, got {c.allocation!r}")
    if c.metric not in METRICS:
        bad(f"metric must be one of {', '.join(METRICS)}, got {c.metric!r}")
    if c.batch_size <= 0 or c.n_boot <= 0:
        bad("batch_size and n_boot must be positive")
    if c.qa.limit is not None and c.qa.limit <= 0:
        bad(f"qa.limit must be positive, got {c.qa.limit}")
    if c.qa.match_type not in (None, "string", "regex"):
        bad(f"qa.match_type must be string, regex or null (from the QA format), got {c.qa.match_type!r}")
    if not isinstance(c.allow_store_mismatch, bool):
        bad(f"allow_store_mismatch must be true or false, got {c.allow_store_mismatch!r}")
    if c.count_method not in (None, "entity", "surface"):
        bad(f"count_method must be entity, surface or null (every question), got {c.count_method!r}")
    if not c.name or c.name in (".", "..") or any(ch in c.name for ch in "/\\") or c.name != c.name.strip():
        bad(f"name {c.name!r} must be a plain folder name (it names runs/<name>); use `out` for another place")
    names = [r.name for r in c.retrievers]
    if len(set(names)) != len(names):
        bad(f"retriever names must be unique, got {names}")
    for n in names:
        if n == "closed" or not n or any(ch in n for ch in ":/ \t"):
            bad(f"retriever name {n!r} is reserved or has ':', '/' or spaces")
    if c.reader.sentences is not None and (isinstance(c.reader.sentences, bool) or not isinstance(c.reader.sentences, int)
                                           or c.reader.sentences <= 0):
        bad(f"reader.sentences must be a positive integer or null, got {c.reader.sentences!r}")
    if c.reader.score_gold not in (True, False, "auto"):
        bad(f"reader.score_gold must be true, false or auto, got {c.reader.score_gold!r}")
    if c.reader.shots < 0 or c.reader.max_new_tokens <= 0 or c.reader.batch_size <= 0:
        bad("reader.shots must be >= 0, reader.max_new_tokens and reader.batch_size positive")
    a = c.adaptive
    if not 0.0 < a.train_fraction < 1.0:
        bad(f"adaptive.train_fraction must be in (0, 1), got {a.train_fraction}")
    if a.unlinked not in ("retrieve", "closed", "learn"):
        bad(f"adaptive.unlinked must be retrieve, closed or learn, got {a.unlinked!r}")
    if a.retriever is not None and a.retriever not in names:
        bad(f"adaptive.retriever {a.retriever!r} is not one of the retrievers ({', '.join(names) or 'none'})")
    if not c.controls.placeholder.strip() or c.controls.min_group < 3:
        bad("controls.placeholder must not be empty and controls.min_group must be >= 3")
    Buckets(tuple(c.buckets))  # checks the edges


def set_dotted(data: dict, key: str, value: Any, where: str = "override") -> None:
    """data["a"]["b"] = value for key "a.b", creating mappings on the way; refuses to descend into a non-mapping."""
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise BadInputError(f"{where}: {key!r}: {p!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """`KEY=VALUE` from --set; VALUE is read as YAML (numbers, lists, null ...)."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise BadInputError(f"--set {item!r}: expected KEY=VALUE, e.g. reader.n_ctx=1024")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise BadInputError(f"--set {item!r}: the value is not valid YAML ({e})") from None
    return key.strip(), value


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                explicit: dict[str, Any] | None = None) -> EvalConfig:
    """Read a YAML preset, apply dotted-key `overrides` (None values are skipped: flags left unset) and then
    `explicit` ones (--set KEY=VALUE: applied as given, so `null` clears a setting), and check everything once.

    Errors name the file and the offending key, e.g. "configs/x.yaml: config.reader: unknown key(s) 'modle'".
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BadInputError(f"{path}: not valid YAML: {e}") from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a mapping of settings at the top level")
    data.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value, where=str(path))
    for key, value in (explicit or {}).items():
        set_dotted(data, key, value, where=str(path))
    return config_from_dict(data, where=str(path))


def config_from_dict(data: dict, where: str = "config") -> EvalConfig:
    try:
        return from_dict(EvalConfig, data, where="config")
    except BadInputError as e:
        raise BadInputError(f"{where}: {e}") from None
    except TypeError as e:  # a nested mapping given where a scalar was expected, etc.
        raise BadInputError(f"{where}: {e}") from None


def to_dict(cfg: EvalConfig) -> dict:
    """Plain YAML-able dict (Paths as strings), the inverse of config_from_dict."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))
