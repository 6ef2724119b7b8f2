"""Failure attribution: why a question is right or wrong with a retriever's passages, next to closed-book.

Each (question, retriever) pair gets exactly one outcome from its closed-book record and its "rag:<retriever>"
record. Right = the run's metric scores 1 (cfg.metric: an exact match for em, a gold answer contained in the
prediction for contains, full token overlap for f1). Evidence shown = an answer-bearing passage (DPR has_answer)
was among the passages the reader was shown: `first_hit <= len(pids)` (pids is a prefix of the retrieved
top-k: passages are dropped from the end to fit the context). The rules are checked in this order, the first
that holds wins, so the six outcomes are exhaustive and mutually exclusive:

    right-both          right closed-book and right with passages
    fixed               wrong closed-book, right with passages (fixed by retrieval)
    misled              right closed-book, wrong with passages (retrieval misled), whatever the passages held
    reader-missed       wrong both ways, and an answer-bearing passage was shown
    retrieval-missed    wrong both ways, none shown, but one was retrieved within the top `depth` (ranked below
                        the k shown, or dropped to fit the context): a better ranking or a larger k would show it
    no-evidence         wrong both ways, and no answer-bearing passage anywhere in the top `depth` retrieved

A question without both records (a partial run) gets no outcome. With sentence selection (reader.sentences)
the reader saw only some sentences of the passages in pids, so "evidence shown" is an upper bound there.

attribution.csv (long format, one row per bucket x retriever x outcome; like summary.csv):
    bucket      a count bucket label, "unlinked", "linked" or "all"
    population  questions of the QA set in that bucket; n: questions with an outcome for this retriever
    retriever   the retriever's name
    outcome     one of OUTCOMES; questions: how many of the n have it
    mean, lo, hi  the share of the n with that outcome and its 95% percentile-bootstrap interval ("linked" and
                "all": population-weighted over the sampling buckets, stratified bootstrap; empty when n = 0)
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from rag.buckets import UNLINKED
from rag.evaluation.records import CLOSED, EvalRecord, rag_mode
from rag.evaluation.stats import Rate, bootstrap_mean, stratified_bootstrap_mean
from rag.evaluation.summary import ALL, LINKED, Bucketing

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.run_folder import Run

RIGHT_BOTH, FIXED, MISLED, READER_MISSED, RETRIEVAL_MISSED, NO_EVIDENCE = (
    "right-both", "fixed", "misled", "reader-missed", "retrieval-missed", "no-evidence")
OUTCOMES = (RIGHT_BOTH, FIXED, MISLED, READER_MISSED, RETRIEVAL_MISSED, NO_EVIDENCE)  # precedence order
LABELS = {
    RIGHT_BOTH: "right both ways",
    FIXED: "fixed by retrieval",
    MISLED: "retrieval misled",
    READER_MISSED: "reader missed",
    RETRIEVAL_MISSED: "retrieval missed",
    NO_EVIDENCE: "wrong both ways, no evidence",
}
DEFINITIONS = {
    RIGHT_BOTH: "right closed-book and with passages",
    FIXED: "wrong closed-book, right with passages",
    MISLED: "right closed-book, wrong with passages",
    READER_MISSED: "wrong both ways although an answer-bearing passage was shown",
    RETRIEVAL_MISSED: "wrong both ways; no answer-bearing passage shown, but one was retrieved deeper (below the k "
                      "shown, or dropped to fit the context)",
    NO_EVIDENCE: "wrong both ways; no answer-bearing passage in any passage retrieved (the whole retrieval depth)",
}
CSV_FIELDS = ("bucket", "population", "n", "retriever", "outcome", "questions", "mean", "lo", "hi")


def is_right(rec: EvalRecord, metric: str = "em") -> bool:
    """The record's answer counts as right: its `metric` (em, f1 or contains) scores 1."""
    return rec.score(metric) >= 1.0


def evidence_shown(rec: EvalRecord) -> bool:
    """An answer-bearing passage was among those the reader was shown (False closed-book)."""
    return rec.first_hit is not None and rec.pids is not None and rec.first_hit <= len(rec.pids)


def outcome(closed: EvalRecord, rag: EvalRecord, metric: str = "em") -> str:
    """The one outcome of a question with a retriever (module docstring: the rules, in precedence order)."""
    if not closed.is_closed or rag.is_closed or closed.qid != rag.qid:
        raise ValueError(f"outcome needs one question's closed-book and retrieval records, got {closed.key} and {rag.key}")
    c, r = is_right(closed, metric), is_right(rag, metric)
    if c and r:
        return RIGHT_BOTH
    if r:
        return FIXED
    if c:
        return MISLED
    if evidence_shown(rag):
        return READER_MISSED
    if rag.first_hit is not None:
        return RETRIEVAL_MISSED
    return NO_EVIDENCE


def attribute(run: "Run", metric: str | None = None) -> dict[str, dict[str, str]]:
    """retriever -> qid -> outcome, for the selected questions with both records (metric: the run's by default)."""
    from rag.evaluation.config import answer_metric

    metric = metric or answer_metric(run.config.metric)
    by_mode = run.by_mode()
    closed = by_mode[CLOSED]
    out: dict[str, dict[str, str]] = {}
    for r in run.retrievers:
        recs = by_mode[rag_mode(r)]
        out[r] = {q: outcome(closed[q], rec, metric) for q, rec in recs.items() if q in closed}
    return out


@dataclass(frozen=True)
class AttributionRow:
    bucket: str
    population: int
    n: int  # questions with an outcome for this retriever in the bucket
    retriever: str
    outcome: str
    questions: int  # of the n, how many have this outcome
    rate: Rate  # share of the n (population-weighted for linked / all)


def summarize_attribution(run: "Run", edges: Sequence[int] | None = None,
                          outcomes: dict[str, dict[str, str]] | None = None) -> list[AttributionRow]:
    """Per bucket (then linked, all), retriever and outcome: the share of questions with it, with its interval."""
    cfg = run.config
    bk = Bucketing.of(run, edges)
    outcomes = attribute(run) if outcomes is None else outcomes
    rows: list[AttributionRow] = []
    for r in run.retrievers:
        got = outcomes.get(r, {})
        for o in OUTCOMES:
            hit = {q: float(v == o) for q, v in got.items()}
            for b in bk.labels:
                x = [hit[q] for q in hit if bk.label_of[q] == b]
                rows.append(AttributionRow(b, bk.population[b], len(x), r, o, int(sum(x)),
                                           bootstrap_mean(x, n_boot=cfg.n_boot, seed=cfg.seed)))
            for name, keep in ((LINKED, lambda s: s != UNLINKED), (ALL, lambda s: True)):
                strata = [s for s in bk.strata.all_labels if keep(s)]
                groups = [[hit[q] for q in hit if bk.stratum_of[q] == s] for s in strata]
                rate = stratified_bootstrap_mean(groups, [bk.strata_population[s] for s in strata], n_boot=cfg.n_boot,
                                                 seed=cfg.seed)
                rows.append(AttributionRow(name, sum(bk.strata_population[s] for s in strata), sum(map(len, groups)), r,
                                           o, int(sum(map(sum, groups))), rate))
    return rows


# --- rendering ----------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return "" if x != x else f"{x:.6f}"  # NaN -> empty


def to_csv(rows: Sequence[AttributionRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in rows:
        w.writerow([r.bucket, r.population, r.n, r.retriever, r.outcome, r.questions, _num(r.rate.mean), _num(r.rate.lo),
                    _num(r.rate.hi)])
    return buf.getvalue()


def to_markdown(rows: Sequence[AttributionRow], metric: str, plot: str | None = None) -> str:
    """The "Failure attribution" section of summary.md: definitions, then one table per retriever."""
    if not rows:
        return ""
    out = [f"## Failure attribution ({metric})", "",
           f"Per question and retriever, from its closed-book and retrieval-augmented records: right = {metric} of 1; "
           "evidence = an answer-bearing passage (DPR has_answer) among the passages shown. Each question has exactly "
           "one outcome, the first of these that holds:", ""]
    out += [f"- **{LABELS[o]}** (`{o}`): {DEFINITIONS[o]}" for o in OUTCOMES]
    out += ["", "Cells: % of the bucket's questions [95% CI]; `linked` and `all` weight each sampling bucket by its "
            "population.", ""]
    idx = {(r.bucket, r.retriever, r.outcome): r for r in rows}
    buckets = list(dict.fromkeys(r.bucket for r in rows))
    for ret in dict.fromkeys(r.retriever for r in rows):
        out += [f"### {ret}", "", "| bucket | n | " + " | ".join(LABELS[o] for o in OUTCOMES) + " |",
                "|" + "---|" * (2 + len(OUTCOMES))]
        for b in buckets:
            first = idx[(b, ret, OUTCOMES[0])]
            cells = [idx[(b, ret, o)].rate.fmt() for o in OUTCOMES]
            out.append(f"| {b} | {first.n} | " + " | ".join(cells) + " |")
        out.append("")
    if plot:
        out += [f"![attribution]({plot})", ""]
    return "\n".join(out)
