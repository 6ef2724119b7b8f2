"""Per-question results of a run: the EvalRecord type and its append-only JSONL file (survives Ctrl-C and kill -9).

records.jsonl, one JSON object per line, one line per (question, mode), keys in this order:
    qid, mode        mode = "closed" or "rag:<retriever name>"; the pair is unique in the file
    question, answers, count (int|null), status, count_method
    prediction, em, f1, contains, prompt_tokens, new_tokens
  retrieval-augmented modes only (absent closed-book):
    passages_dropped, passages_truncated
    pids             passage ids given to the reader
    retrieved        the top-k retrieved passage ids
    first_hit        rank (1-based) of the first retrieved passage holding a gold answer within `depth`, or null
    depth            how many passages were retrieved and checked for the answer
  where the reader scored the gold answers (reader.score_gold), after the same prompt:
    gold_answer      the best-scoring gold alias
    gold_logprob     its summed log-probability (natural log), teacher-forced after "A:" up to the newline
    gold_tokens      its length in the reader's tokens (per-token log-probability = gold_logprob / gold_tokens)
Buckets are not stored: they are derived from `count` when a report is rendered, so edges can change later.
Runs written before `count_method` existed lack it (read as None).

A batch of lines is written with one write() and fsync'ed: a kill leaves at most one torn last line (no
trailing newline), which `load()` cuts off; everything before it is complete.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rag.errors import ArtifactError

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
CLOSED = "closed"
Key = tuple[str, str]  # (qid, mode)


def rag_mode(name: str) -> str:
    """The mode of a retriever's records: "rag:<name>"."""
    return f"rag:{name}"


@dataclass(frozen=True)
class EvalRecord:
    """One question answered in one mode, scored. Closed-book records leave the retrieval fields None."""

    qid: str
    mode: str
    question: str
    answers: tuple[str, ...]
    count: int | None  # relevant-document count; None: unlinked
    status: str  # the counts table's status ("ok", "unlinked", ...)
    count_method: str | None  # entity / surface / none / external; None in runs older than the field
    prediction: str
    em: float
    f1: float
    contains: float
    prompt_tokens: int
    new_tokens: int
    passages_dropped: int | None = None
    passages_truncated: int | None = None
    pids: tuple[str, ...] | None = None  # shown to the reader
    retrieved: tuple[str, ...] | None = None  # top-k retrieved
    first_hit: int | None = None
    depth: int | None = None
    gold_answer: str | None = None
    gold_logprob: float | None = None
    gold_tokens: int | None = None

    @property
    def key(self) -> Key:
        return (self.qid, self.mode)

    @property
    def is_closed(self) -> bool:
        return self.mode == CLOSED

    @property
    def retriever(self) -> str | None:
        """The retriever's name of a "rag:<name>" record; None closed-book."""
        return self.mode.split(":", 1)[1] if self.mode.startswith("rag:") else None

    def score(self, measure: str) -> float:
        """em, f1, contains, or logprob (the gold answer's summed log-probability; NaN where not scored)."""
        if measure == "logprob":
            return float("nan") if self.gold_logprob is None else float(self.gold_logprob)
        if measure == "logprob_per_token":
            return float("nan") if not self.gold_tokens else float(self.gold_logprob) / self.gold_tokens
        if measure not in ("em", "f1", "contains"):
            raise KeyError(f"unknown measure {measure!r}; records hold em, f1, contains and logprob")
        return float(getattr(self, measure))

    def hit_at(self, k: int) -> bool:
        """Did a passage holding the answer rank within the top k retrieved? (False closed-book)"""
        return self.first_hit is not None and self.first_hit <= k

    def to_json(self) -> dict:
        """The on-disk object (key order fixed; retrieval keys only for retrieval-augmented records)."""
        out = {f: getattr(self, f) for f in _COMMON}
        out["answers"] = list(self.answers)
        if self.depth is not None:
            for f in _RETRIEVAL:
                out[f] = getattr(self, f)
            out["pids"], out["retrieved"] = list(self.pids or ()), list(self.retrieved or ())
        if self.gold_logprob is not None:  # absent where not scored: older runs' bytes are unchanged
            for f in _GOLD:
                out[f] = getattr(self, f)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "EvalRecord":
        """Read one on-disk object; unknown keys or missing required ones are a ValueError."""
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        unknown = set(obj) - _FIELDS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        missing = [f for f in _REQUIRED if f not in obj]
        if missing:
            raise ValueError(f"missing keys {missing}")
        kw = dict(obj)
        kw.setdefault("count_method", None)
        kw["answers"] = tuple(kw["answers"])
        for f in ("pids", "retrieved"):
            if kw.get(f) is not None:
                kw[f] = tuple(kw[f])
        return cls(**kw)


_COMMON = ("qid", "mode", "question", "answers", "count", "status", "count_method", "prediction", "em", "f1",
           "contains", "prompt_tokens", "new_tokens")
_RETRIEVAL = ("passages_dropped", "passages_truncated", "pids", "retrieved", "first_hit", "depth")
_GOLD = ("gold_answer", "gold_logprob", "gold_tokens")
_FIELDS = {f.name for f in dataclasses.fields(EvalRecord)}
_REQUIRED = tuple(f for f in _COMMON if f != "count_method")


class RecordStore:
    """records.jsonl of one run folder: EvalRecords by (qid, mode), appended in batches."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self, repair: bool = True) -> dict[Key, EvalRecord]:
        """All finished records by (qid, mode), in file order. A torn last line is discarded (and, with
        repair=True, cut from the file so later appends start on a clean line)."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if end < len(data):
            log.warning("%s: discarding a torn last line (%d bytes) left by an interrupted run", self.path, len(data) - end)
            if repair:
                with open(self.path, "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
        out: dict[Key, EvalRecord] = {}
        lines = data[:end].split(b"\n")[:-1]
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = EvalRecord.from_json(json.loads(line))
            except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
                raise ArtifactError(
                    f"{self.path}:{i}: not a valid record ({e}); the file was edited or damaged. Remove that line "
                    f"(its question is then recomputed) or start the run afresh with --overwrite"
                ) from None
            if rec.key in out:
                log.warning("%s:%d: duplicate record for %s; keeping the first", self.path, i, rec.key)
                continue
            out[rec.key] = rec
        return out

    def append(self, records: Iterable[EvalRecord]) -> int:
        """Write records as complete lines in one write, then fsync; returns how many."""
        lines = [json.dumps(r.to_json(), ensure_ascii=False, separators=(",", ":")) for r in records]
        if not lines:
            return 0
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        return len(lines)
