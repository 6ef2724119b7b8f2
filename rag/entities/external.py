"""External per-question document counts: TREC qrels compared with ours (Spearman), and tables imported as counts.

Import (`rag counts import`): a table of per-question counts made elsewhere (.parquet, .jsonl or .tsv; one row per
question with a question id and a count, null or empty = no count; optionally status, question text, method)
becomes a counts folder (rag.counts, method "external") after it is checked against the QA file it was made for.
Only such folders are evaluated: the columns are named (or recognised) once, here, not at evaluation time.

NanoKnow (castorini) ships, for NQ-open test questions, which FineWeb-Edu documents support the answer:
    qrels.*.txt               `qid Q0 docid rel` per line (rel > 0 = relevant; capped at 100 docs per question)
    topics.*.supported.tsv    `qid \\t question` for questions with at least one qrel
    topics.*.unsupported.tsv  `qid \\t question` for questions with none (their count is 0)
An external count = the number of distinct relevant docids of a question. Questions are matched to ours by
normalized question text (default) or by number (NanoKnow qid "17" = record 17 of the QA file).
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from rag.errors import BadInputError

log = logging.getLogger(__name__)


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


# --- importing a table of counts ---------------------------------------------------------------------------

TABLE_SUFFIXES = (".parquet", ".jsonl", ".tsv")
# column -> the spellings recognised when the column is not named (first match wins)
COLUMNS = {
    "qid": ("qid", "question_id", "id"),
    "count": ("count", "cooccurrence", "co_count", "n_docs"),
    "status": ("status", "label"),
    "question": ("question", "text"),
    "method": ("method", "count_method"),
}
REQUIRED = ("qid", "count")


def table_file(path: str | os.PathLike) -> Path:
    """The table file itself: `path`, or a folder's counts.parquet / counts.jsonl / counts.tsv."""
    path = Path(path)
    if path.is_dir():
        found = next((path / f"counts{s}" for s in TABLE_SUFFIXES if (path / f"counts{s}").exists()), None)
        if found is None:
            raise BadInputError(f"{path}: no counts table in the folder (looked for counts{', counts'.join(TABLE_SUFFIXES)})")
        return found
    return path


def read_table(path: str | os.PathLike) -> dict[str, list]:
    """column -> values of a .parquet, .jsonl or .tsv table (a folder: its counts.parquet/.jsonl/.tsv)."""
    path = table_file(path)
    if not path.exists():
        raise BadInputError(f"table {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pydict()
    if path.suffix == ".jsonl":
        recs = []
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        recs.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise BadInputError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
        keys = list(dict.fromkeys(k for r in recs for k in r))
        return {k: [r.get(k) for r in recs] for k in keys}
    if path.suffix == ".tsv":
        import csv

        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            recs = list(reader)
            keys = reader.fieldnames or []
        return {k: [r.get(k) for r in recs] for k in keys}
    raise BadInputError(f"{path}: a table of counts is a {', '.join(TABLE_SUFFIXES)} file, not {path.suffix or 'a file without suffix'}")


def table_columns(columns: Sequence[str], named: dict[str, str | None], where: str) -> dict[str, str]:
    """Our field -> the table's column: as `named`, else the first recognised spelling (COLUMNS)."""
    out = {}
    for what, spellings in COLUMNS.items():
        name = named.get(what)
        if name is not None:
            if name not in columns:
                raise BadInputError(f"{where}: no column {name!r} (the {what} column); columns: {', '.join(columns)}")
            out[what] = name
            continue
        found = next((c for c in spellings if c in columns), None)
        if found is not None:
            out[what] = found
        elif what in REQUIRED:
            raise BadInputError(f"{where}: no {what} column (looked for {', '.join(spellings)}; columns: "
                                f"{', '.join(columns)}); name it with --{what}-column")
    return out


def import_table(
    table: str | os.PathLike,
    qa_path: str | os.PathLike,
    out: str | os.PathLike,
    columns: dict[str, str | None] | None = None,
    qa_format: str | None = None,
    overwrite: bool = False,
):
    """Check a table of per-question counts against the QA file it was made for and write it as a counts folder.

    `columns`: our field (qid, count, status, question, method) -> the table's column name; unnamed fields are
    recognised by their usual spellings (COLUMNS). Refused: a question id twice, a count that is not a
    non-negative integer, ids that are not in the QA file, question texts that differ from the QA file's.
    Questions of the QA file the table lacks are only reported (a run with a smaller --limit may not need them).
    Returns (rows, manifest) of the written folder.
    """
    from rag.artifacts import quick_fingerprint
    from rag.counts import different_questions, from_records, load_counts, qa_block, save_counts
    from rag.qa import load_questions

    table, qa_path = table_file(table), Path(qa_path)
    data = read_table(table)
    cols = table_columns(list(data), dict(columns or {}), str(table))
    n = len(data[cols["qid"]])
    records = [{what: data[col][i] for what, col in cols.items()} for i in range(n)]
    if not records:
        raise BadInputError(f"{table}: the table has no rows")
    rows = from_records(records, where=str(table))
    questions = load_questions(qa_path, qa_format)
    by_id = {q.qid: q for q in questions}
    unknown = [r.qid for r in rows if r.qid not in by_id]
    if unknown:
        raise BadInputError(
            f"{table}: {len(unknown)} of its {len(rows)} question ids are not in {qa_path} (e.g. {unknown[0]!r}; the QA "
            f"file's ids look like {questions[0].qid!r}): pass the QA file the table was made for, or give the ids as "
            f"rag numbers them (`rag qa info QA_FILE` prints them)"
        )
    wrong = different_questions({r.qid: r.question for r in rows if r.question}, [by_id[r.qid] for r in rows])
    if wrong:
        q = wrong[0]
        given = next(r.question for r in rows if r.qid == q.qid)
        raise BadInputError(f"{table}: {len(wrong)} question ids carry other questions than in {qa_path} (e.g. {q.qid!r} "
                            f"is {given!r} in the table but {q.question!r} in the QA file)")
    rows = [replace(r, question=by_id[r.qid].question, answers=tuple(by_id[r.qid].answers)) for r in rows]
    missing = len(questions) - len(rows)
    if missing:
        log.warning("%s: %d of the %d questions of %s have no row; evaluating them will be refused", table, missing,
                    len(questions), qa_path)
    source = {"path": str(table), "fingerprint": quick_fingerprint(table), "columns": cols}
    save_counts(rows, out, overwrite=overwrite, qa=qa_block(qa_path), source=source)
    return load_counts(out)
