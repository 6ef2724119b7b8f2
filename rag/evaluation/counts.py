"""Relevant-document counts as the evaluator needs them: qid -> count (None when unlinked), checked against the QA set.

Two kinds of counts folder are read (each a folder with manifest.json):
  - made by `rag counts build` (rag.entities.counting, manifest kind "counts" with "files"): read through
    rag.entities.counting.load_counts; a question whose status is not "ok" is unlinked;
  - any other table counts.parquet / counts.jsonl / counts.tsv (external counts, hand-made tables), one row
    per question with columns qid, count (int, or null = unlinked) and optionally status, question and
    method (how the count was obtained; "external" when absent).
The manifest's "qa" block ({"path", "fingerprint" or "sha256"}) says which QA file the table was made for.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rag.artifacts import MANIFEST, file_sha256, quick_fingerprint, read_manifest
from rag.errors import ArtifactError, BadInputError
from rag.types import Question

log = logging.getLogger(__name__)

TABLE_NAMES = ("counts.parquet", "counts.jsonl", "counts.tsv")
# accepted spellings of the columns the evaluator reads (first match wins)
_QID = ("qid", "question_id", "id")
_COUNT = ("count", "cooccurrence", "co_count", "n_docs")
_STATUS = ("status", "label")
_QUESTION = ("question", "text")


@dataclass
class CountsTable:
    folder: Path
    manifest: dict
    fingerprint: str  # of the manifest and the table file: a run records it
    counts: dict[str, int | None]  # qid -> count (None: unlinked)
    status: dict[str, str] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)  # qid -> question text, for the QA check
    # qid -> how the count was obtained: entity / surface / none (rag.entities.counting); "external" for tables
    method: dict[str, str] = field(default_factory=dict)

    def method_of(self, qid: str) -> str:
        return self.method.get(qid, "external" if self.counts.get(qid) is not None else "none")

    def count_of(self, qid: str) -> int | None:
        return self.counts[qid]


def _pick(columns: Sequence[str], names: Sequence[str], what: str, path: Path, required: bool = True) -> str | None:
    for n in names:
        if n in columns:
            return n
    if required:
        raise ArtifactError(f"{path}: no {what} column (looked for {', '.join(names)}; columns: {', '.join(columns)})")
    return None


def _read_rows(path: Path) -> dict[str, list]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pydict()
    if path.suffix == ".jsonl":
        rows: dict[str, list] = {}
        with open(path, encoding="utf-8") as f:
            recs = []
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        recs.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ArtifactError(f"{path}:{line_no}: not valid JSON ({e.msg}); rebuild the counts") from None
        keys = list(dict.fromkeys(k for r in recs for k in r))
        for k in keys:
            rows[k] = [r.get(k) for r in recs]
        return rows
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        recs = list(reader)
        keys = reader.fieldnames or []
    return {k: [r.get(k) for r in recs] for k in keys}


def _as_count(v, where: str) -> int | None:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        c = int(v)
    except (TypeError, ValueError):
        raise ArtifactError(f"{where}: count {v!r} is not an integer") from None
    if c < 0:
        raise ArtifactError(f"{where}: negative count {c}")
    return c


def _from_counting(folder: Path):
    """A folder made by `rag counts build` (rag.entities.counting), read through its own loader."""
    from rag.entities.counting import OK
    from rag.entities.counting import load_counts as load_rows

    rows, _ = load_rows(folder)
    counts = {r.qid: (r.count if r.status == OK else None) for r in rows}
    if len(counts) != len(rows):
        raise ArtifactError(f"{folder}: question ids appear more than once; rebuild the counts")
    return counts, {r.qid: r.status for r in rows}, {r.qid: r.question for r in rows}, {r.qid: r.method for r in rows}


def _from_table(table: Path):
    """Any table with a question id and a count column (external counts, hand-made tables)."""
    rows = _read_rows(table)
    cols = list(rows)
    qcol = _pick(cols, _QID, "question id", table)
    ccol = _pick(cols, _COUNT, "count", table)
    scol = _pick(cols, _STATUS, "status", table, required=False)
    tcol = _pick(cols, _QUESTION, "question", table, required=False)
    counts: dict[str, int | None] = {}
    for i, (qid, c) in enumerate(zip(rows[qcol], rows[ccol])):
        qid = str(qid)
        if qid in counts:
            raise ArtifactError(f"{table}: question id {qid!r} appears twice (row {i}); rebuild the counts")
        counts[qid] = _as_count(c, f"{table}: row {i} ({qid})")
    status = {str(q): str(s) for q, s in zip(rows[qcol], rows[scol])} if scol else {}
    # a status other than ok marks an unlinked question even if a count was written
    for q, s in status.items():
        if s not in ("ok", "linked", "") and counts.get(q) is not None:
            counts[q] = None
    questions = {str(q): str(t) for q, t in zip(rows[qcol], rows[tcol])} if tcol else {}
    mcol = _pick(cols, ("method", "count_method"), "method", table, required=False)
    method = {str(q): str(m) for q, m in zip(rows[qcol], rows[mcol]) if m} if mcol else {}
    return counts, status, questions, method


def load_counts(folder: str | os.PathLike) -> CountsTable:
    """Open a counts folder; errors say how to build one."""
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactError(
            f"counts {folder} does not exist; build it with `rag counts build --qa QA_FILE --out {folder}` "
            f"(see the README, section Evaluation)"
        )
    manifest = read_manifest(folder)
    table = next((folder / n for n in TABLE_NAMES if (folder / n).exists()), None)
    if table is None:
        raise ArtifactError(f"{folder}: no counts table ({', '.join(TABLE_NAMES)}); rebuild the counts")
    if manifest.get("kind") == "counts" and "files" in manifest:
        counts, status, questions, method = _from_counting(folder)
    else:
        counts, status, questions, method = _from_table(table)
    h = hashlib.sha256((folder / MANIFEST).read_bytes())
    h.update(quick_fingerprint(table).encode())
    return CountsTable(folder, manifest, h.hexdigest()[:32], counts, status, questions, method)


def _folder_fingerprint(path: Path) -> str:
    """A QA folder (EntityQuestions: one file per relation): its files' names and quick fingerprints."""
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(quick_fingerprint(p).encode())
    return h.hexdigest()


def qa_fingerprint(path: Path) -> str:
    """The fingerprint a run manifest records for its QA input (file or folder)."""
    return _folder_fingerprint(path)[:32] if path.is_dir() else file_sha256(path)[:32]


def _qa_fingerprints(path: Path) -> set[str]:
    """Every fingerprint spelling a counts builder may have recorded for the QA input."""
    if path.is_dir():
        full = _folder_fingerprint(path)
        return {full, full[:32]}
    sha = file_sha256(path)
    q = quick_fingerprint(path)
    return {sha, sha[:32], sha[:16], q, q[:16]}


def check_counts_match(counts: CountsTable, questions: Sequence[Question], qa_path: str | os.PathLike) -> None:
    """Refuse a counts table made for another QA set, or one that lacks some of the questions.

    Two checks: the QA fingerprint recorded in the counts manifest (when there is one) against `qa_path`,
    and, question by question, that every qid is in the table with the same question text.
    """
    qa_path = Path(qa_path)
    qa = counts.manifest.get("qa") or {}
    recorded = qa.get("fingerprint") or qa.get("sha256") if isinstance(qa, dict) else None
    if recorded and recorded not in _qa_fingerprints(qa_path):
        raise BadInputError(
            f"counts {counts.folder} were made for QA file {qa.get('path', '?')} (fingerprint {recorded}), not for "
            f"{qa_path}: build counts for this QA file (rag counts build --qa {qa_path} ...) or point `counts` at them"
        )
    missing = [q.qid for q in questions if q.qid not in counts.counts]
    if missing:
        other = next(iter(counts.counts), None)
        raise BadInputError(
            f"counts {counts.folder} lack {len(missing)} of the {len(questions)} questions of {qa_path} "
            f"(e.g. {missing[0]!r}; the table has ids like {other!r}): they were made for another QA set or a "
            f"smaller --limit; rebuild them for {qa_path}"
        )
    if counts.questions:
        norm = lambda s: " ".join(s.lower().split())  # noqa: E731
        wrong = [q for q in questions if norm(counts.questions.get(q.qid, q.question)) != norm(q.question)]
        if wrong:
            q = wrong[0]
            raise BadInputError(
                f"counts {counts.folder} do not match {qa_path}: {len(wrong)} question ids carry other questions "
                f"(e.g. {q.qid!r} is {q.question!r} here but {counts.questions[q.qid]!r} in the counts); "
                f"rebuild the counts for this QA file"
            )


def write_counts(folder: str | os.PathLike, rows: Sequence[dict], qa_path: str | os.PathLike | None = None, **fields) -> Path:
    """Write a minimal counts folder (qid, question, count, status, ...) — for tests and external counts.

    `rows` are dicts with at least qid and count (None = unlinked); status defaults to ok / unlinked.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rag.artifacts import atomic_dir, write_manifest

    rows = [{**r, "status": r.get("status") or ("ok" if r.get("count") is not None else "unlinked")} for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: [r.get(k) for r in rows] for k in keys})
    qa = None
    if qa_path is not None:
        p = Path(qa_path)
        qa = {"path": str(p), "fingerprint": sorted(_qa_fingerprints(p), key=len)[-1] if p.is_dir() else file_sha256(p)}
    with atomic_dir(folder, overwrite=True) as tmp:
        pq.write_table(table, tmp / "counts.parquet")
        write_manifest(tmp, kind="counts", format=1, qa=qa, n_questions=len(rows), **fields)
    return Path(folder)
