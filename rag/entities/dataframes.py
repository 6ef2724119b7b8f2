"""A counts folder as pandas DataFrames: `open_counts(path)` (pandas imported lazily: pip install 'rag[analysis]').

    counts = open_counts("indexes/counts-nq-open-wiki-both")
    counts.records()      # one row per question
    counts.summary()      # questions per bucket and count method

Columns and dtypes (pandas' nullable `string` / `Int64`; `category` ordered by bucket label, then "unlinked"):

records(): one row per question, in the table's order (rag.counts.QuestionCount's fields, plus the bucket)
    qid, question string | answers object (tuple of str) | count Int64 (NA unless status is "ok": the evaluator's
    view, rag.counts.CountsTable) | bucket category | status string (ok, question-unlinked, answer-unlinked,
    both-unlinked, unlinked) | method string (entity, surface, none, external)
    q_entity, a_entity string (NA: none chosen) | q_entity_docs, a_entity_docs int64
    q_entities, a_entities object (tuple of str) | q_occurrence, a_occurrence int64
    q_source, a_source string | q_mention, a_mention string (NA: none) | why string
summary(): per bucket and method with at least one question
    bucket category | method string | questions int64 | share float64 (of all questions in the table)
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.buckets import DEFAULT_EDGES, Buckets
from rag.counts import OK, QuestionCount, load_counts

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COUNT_DTYPES = {
    "qid": "string", "question": "string", "answers": "object", "count": "Int64", "bucket": "category",
    "status": "string", "method": "string", "q_entity": "string", "a_entity": "string", "q_entity_docs": "int64",
    "a_entity_docs": "int64", "q_entities": "object", "a_entities": "object", "q_occurrence": "int64",
    "a_occurrence": "int64", "q_source": "string", "a_source": "string", "q_mention": "string", "a_mention": "string",
    "why": "string",
}
SUMMARY_DTYPES = {"bucket": "category", "method": "string", "questions": "int64", "share": "float64"}


def _frame(columns: dict[str, list], dtypes: dict[str, str], labels: Sequence[str]) -> "pd.DataFrame":
    from rag.errors import require

    pd = require("pandas", "analysis")
    out = {}
    for name, dtype in dtypes.items():
        values = columns[name]
        if dtype == "category":
            out[name] = pd.Categorical(values, categories=list(labels), ordered=True)
        else:
            out[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(out, index=pd.RangeIndex(len(columns[next(iter(dtypes))])))


class OpenCounts:
    """A counts folder for analysis: its manifest, typed rows (rag.counts.QuestionCount) and DataFrames."""

    def __init__(self, folder: Path, manifest: dict, rows: list[QuestionCount], edges: Sequence[int] = DEFAULT_EDGES):
        self.folder = Path(folder)
        self.manifest = manifest
        self.rows = rows
        self.buckets = Buckets(tuple(edges))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"OpenCounts({str(self.folder)!r}, questions={len(self.rows)})"

    def _counts(self) -> list[int | None]:
        return [r.count if r.status == OK else None for r in self.rows]

    def records(self) -> "pd.DataFrame":
        """One row per question (columns and dtypes: the module docstring)."""
        cols: dict[str, list] = {name: [] for name in COUNT_DTYPES}
        for f in fields(QuestionCount):
            values = [getattr(r, f.name) for r in self.rows]
            cols[f.name] = [tuple(v) for v in values] if f.name in ("answers", "q_entities", "a_entities") else values
        cols["count"] = self._counts()
        cols["bucket"] = self.buckets.assign(cols["count"])
        return _frame(cols, COUNT_DTYPES, self.buckets.all_labels)

    def summary(self) -> "pd.DataFrame":
        """Questions per bucket and count method, and their share of the table."""
        n: dict[tuple[str, str], int] = {}
        for b, r in zip(self.buckets.assign(self._counts()), self.rows):
            n[(b, r.method)] = n.get((b, r.method), 0) + 1
        order = {b: i for i, b in enumerate(self.buckets.all_labels)}
        keys = sorted(n, key=lambda k: (order[k[0]], k[1]))
        total = max(len(self.rows), 1)
        cols = {"bucket": [b for b, _ in keys], "method": [m for _, m in keys], "questions": [n[k] for k in keys],
                "share": [n[k] / total for k in keys]}
        return _frame(cols, SUMMARY_DTYPES, self.buckets.all_labels)


def open_counts(folder: str | os.PathLike, edges: Sequence[int] = DEFAULT_EDGES) -> OpenCounts:
    """Read a counts folder (rag.counts.load_counts) for analysis with pandas; `edges`: the buckets' lower edges."""
    rows, manifest = load_counts(folder)
    return OpenCounts(Path(folder), manifest, rows, edges)
