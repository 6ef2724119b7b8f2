"""Failure attribution on hand-made records: every outcome, the precedence between them, and the per-bucket
shares with their intervals (population-weighted in linked / all)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.evaluation.attribution import (FIXED, MISLED, NO_EVIDENCE, OUTCOMES, READER_MISSED, RETRIEVAL_MISSED, RIGHT_BOTH,
                                        attribute, evidence_shown, outcome, summarize_attribution, to_csv, to_markdown)
from rag.evaluation.config import EvalConfig, QAConfig, RetrieverConfig
from rag.evaluation.records import EvalRecord
from rag.evaluation.run_folder import Run, Selection


def closed(qid: str, right: bool, count: int | None = 5, f1: float | None = None) -> EvalRecord:
    return EvalRecord(qid=qid, mode="closed", question=f"question {qid}", answers=("Oslo",), count=count,
                      status="ok" if count is not None else "unlinked", count_method="entity",
                      prediction="Oslo" if right else "Bergen", em=float(right), f1=float(right) if f1 is None else f1,
                      contains=float(right), prompt_tokens=10, new_tokens=2)


def rag(qid: str, right: bool, first_hit: int | None, shown: int = 3, count: int | None = 5, mode: str = "rag:bm25") -> EvalRecord:
    retrieved = tuple(f"p{i}" for i in range(3))
    return EvalRecord(qid=qid, mode=mode, question=f"question {qid}", answers=("Oslo",), count=count,
                      status="ok" if count is not None else "unlinked", count_method="entity",
                      prediction="Oslo" if right else "Bergen", em=float(right), f1=float(right), contains=float(right),
                      prompt_tokens=100, new_tokens=2, passages_dropped=3 - shown, passages_truncated=0,
                      pids=retrieved[:shown], retrieved=retrieved, first_hit=first_hit, depth=20)


# (closed right, rag right, first_hit, passages shown) -> outcome; the comments say which rule decides
CASES = [
    ((True, True, 1, 3), RIGHT_BOTH),
    ((True, True, None, 3), RIGHT_BOTH),  # right both ways, evidence or not
    ((False, True, 2, 3), FIXED),
    ((False, True, None, 3), FIXED),  # right with passages that do not hold the answer: still fixed
    ((True, False, 1, 3), MISLED),  # misled takes precedence over reader-missed
    ((True, False, None, 3), MISLED),
    ((False, False, 3, 3), READER_MISSED),  # the answer-bearing passage was the last one shown
    ((False, False, 4, 3), RETRIEVAL_MISSED),  # ranked just below the k shown
    ((False, False, 3, 2), RETRIEVAL_MISSED),  # in the top k, but dropped to fit the context
    ((False, False, None, 3), NO_EVIDENCE),
]


@pytest.mark.parametrize("case, want", CASES)
def test_each_outcome(case, want):
    c, r, hit, shown = case
    assert outcome(closed("q", c), rag("q", r, hit, shown)) == want


def test_every_outcome_is_reachable_and_the_rules_are_exhaustive():
    assert {want for _, want in CASES} == set(OUTCOMES)
    seen = set()
    for c in (True, False):  # every combination gets exactly one outcome
        for r in (True, False):
            for hit in (None, 1, 3, 4, 20):
                for shown in (0, 2, 3):
                    seen.add(outcome(closed("q", c), rag("q", r, hit, shown)))
    assert seen == set(OUTCOMES)


def test_evidence_shown_and_the_metric():
    assert evidence_shown(rag("q", False, 2, shown=2)) and not evidence_shown(rag("q", False, 3, shown=2))
    assert not evidence_shown(closed("q", True))
    # with f1 as the metric, a partial overlap is not right
    assert outcome(closed("q", False, f1=0.5), rag("q", True, 1), metric="f1") == FIXED
    with pytest.raises(ValueError, match="closed-book and retrieval records"):
        outcome(rag("q", True, 1), rag("q", True, 1))
    with pytest.raises(ValueError):
        outcome(closed("a", True), rag("b", True, 1))


def hand_run(tmp_path: Path) -> Run:
    """8 questions in buckets "1-9" (4) and ">=1000" (2) and unlinked (2); the 1-9 stratum is 10x the others'."""
    cfg = EvalConfig(qa=QAConfig(tmp_path / "qa.jsonl"), counts=tmp_path / "counts",
                     retrievers=[RetrieverConfig("bm25", tmp_path / "bm25")], n_boot=300)
    spec = [  # qid, count, closed right, rag right, first hit
        ("a", 5, False, True, 1), ("b", 5, False, False, 2), ("c", 5, False, False, None), ("d", 5, True, True, 1),
        ("e", 2000, True, False, 1), ("f", 2000, True, True, None), ("g", None, False, False, 9), ("h", None, False, True, 1),
    ]
    records = {}
    for qid, count, c, r, hit in spec:
        for rec in (closed(qid, c, count), rag(qid, r, hit, count=count)):
            records[rec.key] = rec
    counts = [5] * 40 + [2000] * 4 + [None] * 4
    selection = Selection(seed=0, per_bucket=4, limit=None, buckets=tuple(cfg.buckets), sample={},
                          qids=tuple(q for q, *_ in spec), population_counts=tuple(counts),
                          population_methods=tuple("entity" if c is not None else "none" for c in counts))
    return Run(tmp_path, {"modes": {"closed": {}, "rag:bm25": {}}}, cfg, selection, records)


def test_summary_per_bucket_with_weighted_pools(tmp_path):
    run = hand_run(tmp_path)
    assert attribute(run) == {"bm25": {"a": FIXED, "b": READER_MISSED, "c": NO_EVIDENCE, "d": RIGHT_BOTH, "e": MISLED,
                                       "f": RIGHT_BOTH, "g": RETRIEVAL_MISSED, "h": FIXED}}
    rows = summarize_attribution(run)
    idx = {(r.bucket, r.outcome): r for r in rows}
    assert len(rows) == len(OUTCOMES) * 8  # 5 count buckets + unlinked + linked + all
    for b in ("1-9", ">=1000", "unlinked", "linked", "all"):  # the shares of a bucket add up to 1
        assert sum(idx[(b, o)].rate.mean for o in OUTCOMES) == pytest.approx(1.0)
    assert idx[("1-9", FIXED)].questions == 1 and idx[("1-9", FIXED)].n == 4 and idx[("1-9", FIXED)].rate.mean == 0.25
    assert idx[("1-9", FIXED)].population == 40
    assert idx[("0", FIXED)].n == 0 and idx[("0", FIXED)].rate.fmt() == "n/a"
    # linked: 1-9 weighs 40, >=1000 weighs 4 -> right-both = (40 * 1/4 + 4 * 1/2) / 44
    assert idx[("linked", RIGHT_BOTH)].rate.mean == pytest.approx((40 * 0.25 + 4 * 0.5) / 44)
    assert idx[("all", FIXED)].rate.mean == pytest.approx((40 * 0.25 + 4 * 0 + 4 * 0.5) / 48)
    for r in rows:
        if r.n:
            assert r.rate.lo - 1e-9 <= r.rate.mean <= r.rate.hi + 1e-9
    csv_text = to_csv(rows)
    assert csv_text.splitlines()[0] == "bucket,population,n,retriever,outcome,questions,mean,lo,hi"
    assert "1-9,40,4,bm25,fixed,1,0.250000," in csv_text
    md = to_markdown(rows, "em", "plots/attribution.png")
    assert md.startswith("## Failure attribution (em)") and "### bm25" in md and "![attribution](plots/attribution.png)" in md
    assert "| 1-9 | 4 | 25.0 [" in md


def test_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from rag.evaluation.plots import plot_attribution

    path = plot_attribution(summarize_attribution(hand_run(tmp_path)), tmp_path / "a.png", title="hand")
    assert path.stat().st_size > 5000
