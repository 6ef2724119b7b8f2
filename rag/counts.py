"""The counts artifact: relevant-document counts per question, one folder per QA set, written and read only here.

    <folder>/counts.parquet   one row per question: the QuestionCount fields
    <folder>/manifest.json    kind "counts", format, the QA file it was made for ("qa": path, fingerprint),
                              the inputs and parameters of the count, and its summary

Two writers go through save_counts: `rag counts build` (rag.entities.counting, the counting pipeline) and
`rag counts import` (rag.entities.external.import_table: a per-question table computed elsewhere, method
"external"). load_counts is the one reader (rows + manifest); CountsTable is the evaluator's view of a folder
(qid -> count / status / method / question) and checks that it was made for the QA set being evaluated.

Format 2 is written. Format 1 (before the surface fallback) is still read: its rows get method "entity" or "none".
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rag.artifacts import MANIFEST, atomic_dir, HashingFile, check_manifest_files, file_digest, file_sizes, quick_fingerprint, read_manifest, write_manifest
from rag.buckets import Buckets, log10_edges
from rag.errors import ArtifactError, BadInputError
from rag.qa import qa_fingerprint, qa_fingerprints
from rag.types import Question

FORMAT = 2
READS = (1, 2)
KIND = "counts"
FILE = "counts.parquet"
# status: was the question counted, else which side linked nothing; UNLINKED: an imported table gave no count
OK, Q_UNLINKED, A_UNLINKED, BOTH_UNLINKED = "ok", "question-unlinked", "answer-unlinked", "both-unlinked"
UNLINKED = "unlinked"
STATUSES = (OK, Q_UNLINKED, A_UNLINKED, BOTH_UNLINKED)
# method: how the count was obtained; EXTERNAL: taken from an imported table
ENTITY, SURFACE, NONE, EXTERNAL = "entity", "surface", "none", "external"
METHODS = (ENTITY, SURFACE, NONE)


@dataclass(frozen=True)
class QuestionCount:
    qid: str
    question: str
    answers: tuple[str, ...]
    q_entity: str | None  # chosen question entity (None when unlinked)
    a_entity: str | None  # chosen answer entity
    count: int  # documents containing both
    q_entity_docs: int  # documents containing the chosen question entity
    a_entity_docs: int
    status: str
    q_entities: tuple[str, ...] = ()  # all question entities considered
    a_entities: tuple[str, ...] = ()  # the tied most frequent answer entities
    q_occurrence: int = 0
    a_occurrence: int = 0
    method: str = NONE  # how the count was obtained: entity / surface / none (external for imported tables)
    q_source: str = ""  # entity / surface / "" (nothing found)
    a_source: str = ""
    q_mention: str | None = None  # question text behind q_entity (the subject phrase for a surface side)
    a_mention: str | None = None  # answer text behind a_entity
    why: str = ""  # for method none: what was missing


# --- write and read ------------------------------------------------------------------------------------------


def _schema():
    import pyarrow as pa

    s, i, ls = pa.string(), pa.int64(), pa.list_(pa.string())
    return pa.schema(
        [
            ("qid", s), ("question", s), ("answers", ls), ("q_entity", s), ("a_entity", s), ("count", i),
            ("q_entity_docs", i), ("a_entity_docs", i), ("status", s), ("q_entities", ls), ("a_entities", ls),
            ("q_occurrence", i), ("a_occurrence", i), ("method", s), ("q_source", s), ("a_source", s),
            ("q_mention", s), ("a_mention", s), ("why", s),
        ]
    )


def save_counts(rows: Sequence[QuestionCount], out: str | os.PathLike, overwrite: bool = False, **manifest_fields) -> dict:
    """Write a counts folder atomically; `manifest_fields` (qa, passages, linker, ...) go into its manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {f.name: [list(v) if isinstance(v, tuple) else v for v in (getattr(r, f.name) for r in rows)] for f in fields(QuestionCount)}
    with atomic_dir(out, overwrite=overwrite, kind=KIND) as tmp:
        with HashingFile(tmp / FILE) as f:  # hashed as it is written
            pq.write_table(pa.table(cols, schema=_schema()), f)
        digest = file_digest(tmp / FILE)
        return write_manifest(
            tmp,
            kind=KIND,
            format=FORMAT,
            libraries=("pyarrow",),
            n_questions=len(rows),
            fingerprint=digest["sha256"][:32],
            summary=summarize(rows),
            files=file_sizes(tmp, [FILE]),
            hashes={FILE: digest},
            **manifest_fields,
        )


def load_counts(folder: str | os.PathLike) -> tuple[list[QuestionCount], dict]:
    """(rows, manifest) of a counts folder; refuses a missing, truncated or hand-made one."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not folder.exists():
        raise ArtifactError(
            f"counts {folder} do not exist; build them with `rag counts build --qa QA_FILE --out {folder}` "
            f"(see the README, section Evaluation), or import a table of counts made elsewhere with "
            f"`rag counts import TABLE --qa QA_FILE --out {folder}`"
        )
    manifest = read_manifest(folder, kind=KIND)
    if "files" not in manifest:  # a table with a manifest written by hand or by an older rag (external counts)
        table = next((folder / n for n in ("counts.parquet", "counts.jsonl", "counts.tsv") if (folder / n).exists()), None)
        raise ArtifactError(
            f"{folder} holds {'a hand-made table ' + table.name if table else 'no counts table'}, not counts written by "
            f"`rag counts build` or `rag counts import`; convert it with "
            f"`rag counts import {table or folder} --qa QA_FILE --out NEW_FOLDER`"
        )
    if manifest.get("format") not in READS:
        raise ArtifactError(f"{folder}: counts format {manifest.get('format')}, this rag reads {READS}; rebuild them")
    check_manifest_files(folder, manifest)
    try:
        d = pq.read_table(folder / FILE).to_pydict()
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{folder / FILE}: cannot be read ({type(e).__name__}: {e}); the file is damaged: "
                            f"rebuild with: rag counts build ...") from e
    n = len(d["qid"])
    if manifest["format"] == 1:  # before the surface fallback: every count came from two entities
        d["method"] = [ENTITY if st == OK else NONE for st in d["status"]]
        d["q_source"] = [ENTITY if qe else "" for qe in d["q_entity"]]
        d["a_source"] = [ENTITY if ae else "" for ae in d["a_entity"]]
        d["q_mention"] = d["a_mention"] = [None] * n
        d["why"] = [""] * n
    names = [f.name for f in fields(QuestionCount)]
    rows = [
        QuestionCount(**{k: tuple(v) if isinstance(v, list) else v for k, v in zip(names, vals)})
        for vals in zip(*(d[k] for k in names))
    ]
    return rows, manifest


def summarize(rows: Sequence[QuestionCount], top: int = 10) -> dict:
    """Questions per status and per log10 bucket of the count, fraction unlinked, most frequent entities."""
    n = len(rows)
    status = Counter(r.status for r in rows)
    linked = [r for r in rows if r.status == OK]
    by_method = Counter(r.method for r in rows)
    max_count = max((r.count for r in linked), default=0)
    buckets = Buckets(edges=log10_edges(max_count))
    labels = buckets.assign([r.count if r.status == OK else None for r in rows])
    per_bucket = Counter(labels)
    split = Counter(zip(labels, (r.method for r in rows)))
    counts = np.array([r.count for r in linked], dtype=np.int64)
    methods = (*METHODS, *sorted(set(by_method) - set(METHODS)))  # EXTERNAL only when a table was imported
    return {
        "n_questions": n,
        "status": {s: status.get(s, 0) for s in (*STATUSES, *sorted(set(status) - set(STATUSES)))},
        "method": {m: by_method.get(m, 0) for m in methods},
        # questions per bucket and how they were counted (entity / surface); unlinked ones are "none"
        "buckets_by_method": {lab: {m: split.get((lab, m), 0) for m in methods if split.get((lab, m), 0)} for lab in buckets.all_labels},
        "fraction_unlinked": round(1 - len(linked) / n, 4) if n else 0.0,
        "buckets": {lab: per_bucket.get(lab, 0) for lab in buckets.all_labels},
        "median_count_linked": float(np.median(counts)) if len(counts) else 0.0,
        "fraction_zero_linked": round(float(np.mean(counts == 0)), 4) if len(counts) else 0.0,
        "top_question_entities": Counter(r.q_entity for r in linked if r.q_source == ENTITY).most_common(top),
        "top_subject_phrases": Counter(r.q_entity for r in linked if r.q_source == SURFACE).most_common(top),
        "top_answer_entities": Counter(r.a_entity for r in linked if r.a_entity is not None).most_common(top),
    }


def as_dicts(rows: Sequence[QuestionCount]) -> list[dict]:
    return [asdict(r) for r in rows]


# --- counts given as plain records (imported tables, tests) ----------------------------------------------

RECORD_KEYS = ("qid", "count", "question", "answers", "status", "method")


def _as_count(v, where: str) -> int | None:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        c = int(v)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: count {v!r} is not an integer") from None
    if c < 0 or c != float(v):
        raise BadInputError(f"{where}: count {v!r} is not a non-negative integer")
    return c


def from_records(records: Iterable[dict], where: str = "counts") -> list[QuestionCount]:
    """QuestionCount rows from `{"qid", "count", ["question", "answers", "status", "method"]}` records.

    count None (or empty) = no count: status "unlinked". A status other than ok ("linked" and "" mean ok)
    marks a question unlinked even when a count is given. method defaults to "external" for a counted
    question and "none" for an unlinked one.
    """
    rows: list[QuestionCount] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        unknown = set(r) - set(RECORD_KEYS)
        if unknown:
            raise BadInputError(f"{where}: row {i} has unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(RECORD_KEYS)})")
        if r.get("qid") is None or str(r["qid"]) == "":
            raise BadInputError(f"{where}: row {i} has no question id")
        qid = str(r["qid"])
        if qid in seen:
            raise BadInputError(f"{where}: question id {qid!r} appears twice (rows {seen[qid]} and {i})")
        seen[qid] = i
        count = _as_count(r.get("count"), f"{where}: row {i} ({qid})")
        status = str(r.get("status") or "")
        if status in ("", OK, "linked"):
            status = OK if count is not None else UNLINKED
        method = str(r.get("method") or "") or (EXTERNAL if status == OK else NONE)
        answers = r.get("answers") or ()
        rows.append(QuestionCount(qid=qid, question=str(r.get("question") or ""), answers=tuple(str(a) for a in answers),
                                  q_entity=None, a_entity=None, count=count or 0, q_entity_docs=0, a_entity_docs=0,
                                  status=status, method=method))
    return rows


def qa_block(qa_path: str | os.PathLike | None) -> dict | None:
    """The manifest's "qa" entry for counts made for `qa_path` (a QA file or folder)."""
    if qa_path is None:
        return None
    return {"path": str(qa_path), "fingerprint": qa_fingerprint(Path(qa_path))}


def write_counts(folder: str | os.PathLike, rows: Sequence[dict], qa_path: str | os.PathLike | None = None,
                 overwrite: bool = True, **manifest_fields) -> Path:
    """A counts folder from plain records (from_records): imported tables and tests."""
    save_counts(from_records(rows, where=str(folder)), folder, overwrite=overwrite, qa=qa_block(qa_path), **manifest_fields)
    return Path(folder)


# --- the evaluator's view ----------------------------------------------------------------------------------


@dataclass
class CountsTable:
    """One counts folder as the evaluator reads it."""

    folder: Path
    manifest: dict
    fingerprint: str  # of the manifest and the table file: a run records it
    counts: dict[str, int | None]  # qid -> count (None: unlinked)
    status: dict[str, str] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)  # qid -> question text (when known), for the QA check
    method: dict[str, str] = field(default_factory=dict)  # qid -> entity / surface / none / external

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "CountsTable":
        folder = Path(folder)
        rows, manifest = load_counts(folder)
        counts = {r.qid: (r.count if r.status == OK else None) for r in rows}
        if len(counts) != len(rows):
            raise ArtifactError(f"{folder}: question ids appear more than once; rebuild the counts")
        h = hashlib.sha256((folder / MANIFEST).read_bytes())
        h.update(quick_fingerprint(folder / FILE).encode())
        return cls(folder, manifest, h.hexdigest()[:32], counts, {r.qid: r.status for r in rows},
                   {r.qid: r.question for r in rows if r.question}, {r.qid: r.method for r in rows})

    def method_of(self, qid: str) -> str:
        return self.method.get(qid, EXTERNAL if self.counts.get(qid) is not None else NONE)

    def count_of(self, qid: str) -> int | None:
        return self.counts[qid]

    def check_matches(self, questions: Sequence[Question], qa_path: str | os.PathLike) -> None:
        """Refuse counts made for another QA set, or ones that lack some of the questions.

        Two checks: the QA fingerprint recorded in the counts manifest (when there is one) against `qa_path`,
        and, question by question, that every qid is in the table with the same question text.
        """
        qa_path = Path(qa_path)
        qa = self.manifest.get("qa") or {}
        recorded = qa.get("fingerprint") or qa.get("sha256") if isinstance(qa, dict) else None
        if recorded and recorded not in qa_fingerprints(qa_path):
            raise BadInputError(
                f"counts {self.folder} were made for QA file {qa.get('path', '?')} (fingerprint {recorded}), not for "
                f"{qa_path}: build counts for this QA file (rag counts build --qa {qa_path} ...) or point `counts` at them"
            )
        missing = [q.qid for q in questions if q.qid not in self.counts]
        if missing:
            other = next(iter(self.counts), None)
            raise BadInputError(
                f"counts {self.folder} lack {len(missing)} of the {len(questions)} questions of {qa_path} "
                f"(e.g. {missing[0]!r}; the table has ids like {other!r}): they were made for another QA set or a "
                f"smaller --limit; rebuild them for {qa_path}"
            )
        wrong = different_questions(self.questions, questions)
        if wrong:
            q = wrong[0]
            raise BadInputError(
                f"counts {self.folder} do not match {qa_path}: {len(wrong)} question ids carry other questions "
                f"(e.g. {q.qid!r} is {q.question!r} here but {self.questions[q.qid]!r} in the counts); "
                f"rebuild the counts for this QA file"
            )


def different_questions(texts: dict[str, str], questions: Sequence[Question]) -> list[Question]:
    """The questions whose text differs (case and spacing aside) from texts[qid]; qids not in `texts` pass."""
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    return [q for q in questions if norm(texts.get(q.qid, q.question)) != norm(q.question)]
