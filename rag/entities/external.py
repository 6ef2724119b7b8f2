"""External per-question document counts from TREC qrels, and their Spearman correlation with ours.

NanoKnow (castorini) ships, for NQ-open test questions, which FineWeb-Edu documents support the answer:
    qrels.*.txt               `qid Q0 docid rel` per line (rel > 0 = relevant; capped at 100 docs per question)
    topics.*.supported.tsv    `qid \\t question` for questions with at least one qrel
    topics.*.unsupported.tsv  `qid \\t question` for questions with none (their count is 0)
An external count = the number of distinct relevant docids of a question. Questions are matched to ours by
normalized question text (default) or by number (NanoKnow qid "17" = record 17 of the QA file).
"""
from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError


@dataclass(frozen=True)
class ExternalCount:
    qid: str
    question: str | None
    count: int


@dataclass(frozen=True)
class Comparison:
    n_ours: int
    n_external: int
    n_shared: int  # questions matched and linked on our side (status ok)
    n_shared_all: int  # matched, any status (unlinked questions have count 0)
    spearman: float  # over linked shared questions
    p_value: float
    spearman_all: float  # over all shared questions, unlinked counted as 0
    match_by: str


def read_qrels(path: str | os.PathLike) -> dict[str, set[str]]:
    """qid -> set of relevant docids (rel > 0)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"qrels file {path} does not exist")
    out: dict[str, set[str]] = defaultdict(set)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise BadInputError(f"{path}:{line_no}: expected `qid Q0 docid relevance`, got {line.strip()[:80]!r}")
            qid, _, docid, rel = parts
            try:
                r = int(rel)
            except ValueError:
                raise BadInputError(f"{path}:{line_no}: relevance {rel!r} is not an integer") from None
            if r > 0:
                out[qid].add(docid)
            else:
                out.setdefault(qid, set())
    return dict(out)


def read_topics(path: str | os.PathLike) -> dict[str, str]:
    """qid -> question text from a `qid \\t question` TSV."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"topics file {path} does not exist")
    out = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line:
                continue
            qid, tab, text = line.partition("\t")
            if not tab or not text.strip():
                raise BadInputError(f"{path}:{line_no}: expected `qid<TAB>question`, got {line[:80]!r}")
            out[qid] = text
    return out


def load_external(source: str | os.PathLike, topics: Sequence[str | os.PathLike] = ()) -> list[ExternalCount]:
    """Counts from a qrels file, or a folder with qrels*.txt and topics*.tsv (NanoKnow's layout).

    Every topic without qrels counts 0 (NanoKnow's "unsupported" questions)."""
    source = Path(source)
    if source.is_dir():
        qrels_files = sorted(source.glob("qrels*.txt"))
        if not qrels_files:
            raise BadInputError(f"{source}: no qrels*.txt file in the folder")
        topics = list(topics) or sorted(source.glob("topics*.tsv"))
    else:
        qrels_files = [source]
    rel: dict[str, set[str]] = {}
    for p in qrels_files:
        for qid, docs in read_qrels(p).items():
            rel.setdefault(qid, set()).update(docs)
    text: dict[str, str] = {}
    for p in topics:
        text.update(read_topics(p))
    qids = sorted(set(rel) | set(text), key=lambda q: (len(q), q))
    return [ExternalCount(qid=q, question=text.get(q), count=len(rel.get(q, ()))) for q in qids]


def normalize_question(q: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", q.lower()).split())


def _number(qid: str, meta_index) -> str | None:
    if meta_index is not None:
        return str(meta_index)
    m = re.search(r"(\d+)$", qid)
    return m.group(1) if m else None


def compare(rows, external: Sequence[ExternalCount], match_by: str = "text", index_of: dict[str, int] | None = None) -> Comparison:
    """Spearman correlation between our counts (QuestionCount rows) and external counts.

    match_by "text": normalized question text; "id": the record number (index_of[qid], else digits ending qid)."""
    from scipy.stats import spearmanr

    if match_by not in ("text", "id"):
        raise BadInputError(f"match_by must be 'text' or 'id', got {match_by!r}")
    if match_by == "text":
        if not any(e.question for e in external):
            raise BadInputError("the external counts have no question texts (no topics file): match by id instead")
        ext = {normalize_question(e.question): e.count for e in external if e.question}
        key = lambda r: normalize_question(r.question)  # noqa: E731
    else:
        ext = {e.qid: e.count for e in external}
        key = lambda r: _number(r.qid, (index_of or {}).get(r.qid))  # noqa: E731
    ours, theirs, ours_all, theirs_all = [], [], [], []
    for r in rows:
        k = key(r)
        if k is None or k not in ext:
            continue
        ours_all.append(r.count if r.status == "ok" else 0)
        theirs_all.append(ext[k])
        if r.status == "ok":
            ours.append(r.count)
            theirs.append(ext[k])
    if len(ours_all) < 3:
        raise BadInputError(f"only {len(ours_all)} questions matched the external counts by {match_by}; nothing to correlate")
    with warnings.catch_warnings():  # constant input -> NaN, reported as such
        warnings.simplefilter("ignore")
        rho, p = spearmanr(ours, theirs) if len(ours) >= 3 else (float("nan"), float("nan"))
        rho_all, _ = spearmanr(ours_all, theirs_all)
    return Comparison(
        n_ours=len(rows),
        n_external=len(external),
        n_shared=len(ours),
        n_shared_all=len(ours_all),
        spearman=float(rho),
        p_value=float(p),
        spearman_all=float(rho_all),
        match_by=match_by,
    )
