"""A run folder as pandas DataFrames: `open_run(path)` (pandas imported lazily: pip install 'rag[analysis]').

    run = open_run("runs/nq-open")       # an OpenRun: .run is the typed Run (manifest, config, EvalRecords)
    run.records()                        # one row per question and mode
    run.summary(), run.recall()          # the rates of summary.csv, recall rows by retriever and k
    run.adaptive(), run.attribution()    # adaptive retrieval; failure attribution per bucket

Every table has fixed columns and dtypes (below), the same for every run, empty or not. `string`, `Int64`,
`Float64` and `boolean` are pandas' nullable dtypes (NA for a missing value); `category` columns are ordered
(bucket labels in the report's order; outcomes in rag.evaluation.attribution.OUTCOMES order).

records(): one row per (question, mode), selected questions in selection order, modes in run.modes order
    qid string | mode string ("closed", "rag:<r>") | retriever string (NA closed-book) | question string
    answers object (tuple of str) | count Int64 (NA: unlinked) | bucket category | status string (the counts'
    link status) | count_method string (NA in runs older than the field) | prediction string
    em, f1, contains float64 | right boolean (the run's metric scores 1)
    gold_logprob Float64 (log-probability of the gold answer; NA when the run did not record it)
    prompt_tokens, new_tokens int64 | passages_dropped, passages_truncated Int64 (NA closed-book)
    first_hit Int64 (1-based rank of the first answer-bearing passage within depth; NA closed-book or none)
    depth Int64 | n_shown Int64 (passages shown to the reader) | evidence_shown boolean (first_hit <= n_shown)
    outcome category (failure attribution of a "rag:<r>" record; NA closed-book or without a closed-book record)
    pids object (tuple of the shown passage ids; None closed-book) | retrieved object (tuple of the top-k ids)
summary(): the rows of summary.csv
    bucket category (labels, "unlinked", "linked", "all") | population, n int64 | system string ("closed",
    "rag:<r>", "gain:<r>", "retriever:<r>") | retriever string (NA closed) | measure string (em, f1, contains,
    recall@k) | mean, lo, hi float64 (NaN when n = 0)
recall(): the retriever rows of summary()
    bucket category | population, n int64 | retriever string | k int64 | mean, lo, hi float64
adaptive(): adaptive retrieval's held-out accuracy (empty when not computed; attrs["error"] says why)
    retriever string | policy string ("adaptive", "always", "never", "adaptive-always", "adaptive-never": the
    last two paired differences) | n int64 | mean, lo, hi float64; attrs: metric, threshold (None: always),
    unlinked_retrieve, description, fraction_retrieved, n_train, n_test
attribution(): the rows of attribution.csv
    bucket category | population, n int64 | retriever string | outcome category | questions int64 |
    mean, lo, hi float64
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from rag.evaluation.records import EvalRecord
from rag.evaluation.run_folder import Run, load_run

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from rag.evaluation.summary import Summary

RECORD_DTYPES = {
    "qid": "string", "mode": "string", "retriever": "string", "question": "string", "answers": "object",
    "count": "Int64", "bucket": "category", "status": "string", "count_method": "string", "prediction": "string",
    "em": "float64", "f1": "float64", "contains": "float64", "right": "boolean", "gold_logprob": "Float64",
    "prompt_tokens": "int64", "new_tokens": "int64", "passages_dropped": "Int64", "passages_truncated": "Int64",
    "first_hit": "Int64", "depth": "Int64", "n_shown": "Int64", "evidence_shown": "boolean", "outcome": "category",
    "pids": "object", "retrieved": "object",
}
RATE_DTYPES = {"population": "int64", "n": "int64", "mean": "float64", "lo": "float64", "hi": "float64"}
SUMMARY_DTYPES = {"bucket": "category", "population": "int64", "n": "int64", "system": "string", "retriever": "string",
                  "measure": "string", "mean": "float64", "lo": "float64", "hi": "float64"}
RECALL_DTYPES = {"bucket": "category", "population": "int64", "n": "int64", "retriever": "string", "k": "int64",
                 "mean": "float64", "lo": "float64", "hi": "float64"}
ADAPTIVE_DTYPES = {"retriever": "string", "policy": "string", "n": "int64", "mean": "float64", "lo": "float64",
                   "hi": "float64"}
ATTRIBUTION_DTYPES = {"bucket": "category", "population": "int64", "n": "int64", "retriever": "string",
                      "outcome": "category", "questions": "int64", "mean": "float64", "lo": "float64", "hi": "float64"}


def pandas():
    from rag.errors import require

    return require("pandas", "analysis")


def frame(columns: dict[str, list], dtypes: dict[str, str], categories: dict[str, Sequence[str]] | None = None) -> "pd.DataFrame":
    """A DataFrame with exactly `dtypes`' columns in that order; "category" columns get ordered `categories`."""
    pd = pandas()
    categories = categories or {}
    out = {}
    for name, dtype in dtypes.items():
        values = columns.get(name, [])
        if dtype == "category":
            out[name] = pd.Categorical(values, categories=list(categories[name]), ordered=True)
        elif dtype == "object":
            s = pd.Series(values, dtype="object")
            out[name] = s
        else:
            out[name] = pd.Series(values, dtype=dtype)
    n = len(next(iter(columns.values()), []))
    return pd.DataFrame(out, index=pd.RangeIndex(n))


class OpenRun:
    """A run folder for analysis: the typed Run (`.run`: manifest, config, selection, EvalRecords) and its tables
    as DataFrames. `edges` re-buckets (default: the run's buckets). Tables are computed on first use and kept."""

    def __init__(self, run: Run, edges: Sequence[int] | None = None):
        self.run = run
        self.edges = tuple(edges) if edges is not None else None
        self._cache: dict = {}

    # the Run's own view, for code that reads EvalRecords
    folder = property(lambda self: self.run.folder)
    manifest = property(lambda self: self.run.manifest)
    config = property(lambda self: self.run.config)
    selection = property(lambda self: self.run.selection)
    retrievers = property(lambda self: self.run.retrievers)
    modes = property(lambda self: self.run.modes)

    def by_mode(self, modes: list[str] | None = None):
        """mode -> qid -> EvalRecord (Run.by_mode)."""
        return self.run.by_mode(modes)

    def __iter__(self) -> Iterator[EvalRecord]:
        return iter(self.run)

    def __repr__(self) -> str:
        return f"OpenRun({str(self.folder)!r}, modes={self.modes}, questions={len(self.selection.qids)})"

    # --- computed once, shared by the tables --------------------------------------------------------

    def _summary(self) -> "Summary":
        if "summary" not in self._cache:
            from rag.evaluation.report import summarize

            self._cache["summary"] = summarize(self.run, self.edges)
        return self._cache["summary"]

    def _outcomes(self) -> dict[str, dict[str, str]]:
        if "outcomes" not in self._cache:
            from rag.evaluation.attribution import attribute

            self._cache["outcomes"] = attribute(self.run)
        return self._cache["outcomes"]

    def _bucketing(self):
        if "bucketing" not in self._cache:
            from rag.evaluation.summary import Bucketing

            self._cache["bucketing"] = Bucketing.of(self.run, self.edges)
        return self._cache["bucketing"]

    def _pooled_labels(self) -> list[str]:
        from rag.evaluation.summary import ALL, LINKED

        return [*self._bucketing().labels, LINKED, ALL]

    # --- tables -------------------------------------------------------------------------------------

    def records(self) -> "pd.DataFrame":
        """One row per question and mode (columns and dtypes: the module docstring)."""
        from rag.evaluation.attribution import OUTCOMES, evidence_shown, is_right

        bk = self._bucketing()
        outcomes = self._outcomes()
        from rag.evaluation.config import answer_metric

        metric = answer_metric(self.config.metric)
        by_mode = self.run.by_mode()
        cols: dict[str, list] = {name: [] for name in RECORD_DTYPES}
        for qid in self.selection.qids:
            for mode in self.modes:
                rec = by_mode[mode].get(qid)
                if rec is None:
                    continue
                closed = rec.is_closed
                for name in ("qid", "mode", "question", "count", "status", "count_method", "prediction", "em", "f1",
                             "contains", "prompt_tokens", "new_tokens", "passages_dropped", "passages_truncated",
                             "first_hit", "depth", "pids", "retrieved"):
                    cols[name].append(getattr(rec, name))
                cols["retriever"].append(rec.retriever)
                cols["answers"].append(tuple(rec.answers))
                cols["bucket"].append(bk.label_of[qid])
                cols["right"].append(is_right(rec, metric))
                cols["gold_logprob"].append(getattr(rec, "gold_logprob", None))  # recorded by newer runs only
                cols["n_shown"].append(None if closed else len(rec.pids or ()))
                cols["evidence_shown"].append(None if closed else evidence_shown(rec))
                cols["outcome"].append(None if closed else outcomes.get(rec.retriever, {}).get(qid))
        return frame(cols, RECORD_DTYPES, {"bucket": bk.labels, "outcome": OUTCOMES})

    def summary(self) -> "pd.DataFrame":
        """The rates of summary.csv: per bucket, system and measure, with 95% intervals."""
        s = self._summary()
        cols: dict[str, list] = {name: [] for name in SUMMARY_DTYPES}
        for r in s.rows:
            for name, v in (("bucket", r.bucket), ("population", r.population), ("n", r.n), ("system", r.system),
                            ("measure", r.measure), ("mean", r.rate.mean), ("lo", r.rate.lo), ("hi", r.rate.hi)):
                cols[name].append(v)
            cols["retriever"].append(r.system.split(":", 1)[1] if ":" in r.system else None)
        return frame(cols, SUMMARY_DTYPES, {"bucket": self._pooled_labels()})

    def recall(self) -> "pd.DataFrame":
        """Each retriever's recall@k per bucket (independent of the reader)."""
        cols: dict[str, list] = {name: [] for name in RECALL_DTYPES}
        for r in self._summary().rows:
            if not r.system.startswith("retriever:"):
                continue
            for name, v in (("bucket", r.bucket), ("population", r.population), ("n", r.n),
                            ("retriever", r.system.split(":", 1)[1]), ("k", int(r.measure.split("@", 1)[1])),
                            ("mean", r.rate.mean), ("lo", r.rate.lo), ("hi", r.rate.hi)):
                cols[name].append(v)
        return frame(cols, RECALL_DTYPES, {"bucket": self._pooled_labels()})

    def adaptive(self) -> "pd.DataFrame":
        """Adaptive retrieval's held-out accuracy next to always / never retrieving; the policy in .attrs."""
        a = self._summary().adaptive
        cols: dict[str, list] = {name: [] for name in ADAPTIVE_DTYPES}
        attrs: dict = {}
        if a is not None and "error" in a:
            attrs["error"] = a["error"]
        elif a is not None:
            for policy, key in (("adaptive", "adaptive"), ("always", "always"), ("never", "never"),
                                ("adaptive-always", "vs_always"), ("adaptive-never", "vs_never")):
                d = a[key]
                for name, v in (("retriever", a["retriever"]), ("policy", policy), ("n", d["n"]), ("mean", d["mean"]),
                                ("lo", d["lo"]), ("hi", d["hi"])):
                    cols[name].append(v)
            p = a["policy"]
            attrs = {"metric": a["metric"], "threshold": p["threshold"], "unlinked_retrieve": p["unlinked_retrieve"],
                     "description": p["description"], "fraction_retrieved": a["fraction_retrieved"],
                     "n_train": a["n_train"], "n_test": a["n_test"]}
        df = frame(cols, ADAPTIVE_DTYPES)
        df.attrs.update(attrs)
        return df

    def attribution(self) -> "pd.DataFrame":
        """Failure attribution per bucket, retriever and outcome: counts and shares with 95% intervals."""
        from rag.evaluation.attribution import OUTCOMES, summarize_attribution

        rows = summarize_attribution(self.run, self.edges, self._outcomes()) if self.retrievers else []
        cols: dict[str, list] = {name: [] for name in ATTRIBUTION_DTYPES}
        for r in rows:
            for name, v in (("bucket", r.bucket), ("population", r.population), ("n", r.n), ("retriever", r.retriever),
                            ("outcome", r.outcome), ("questions", r.questions), ("mean", r.rate.mean),
                            ("lo", r.rate.lo), ("hi", r.rate.hi)):
                cols[name].append(v)
        return frame(cols, ATTRIBUTION_DTYPES, {"bucket": self._pooled_labels(), "outcome": OUTCOMES})


def open_run(path: str | Path, edges: Sequence[int] | None = None) -> OpenRun:
    """Read a run folder (rag.evaluation.run_folder.load_run) for analysis with pandas; `edges` re-buckets."""
    if edges is not None:
        from rag.buckets import Buckets

        Buckets(tuple(edges))  # checks them
    return OpenRun(load_run(path), edges)
