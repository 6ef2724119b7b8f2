"""Adaptive retrieval: the learned count threshold on hand cases, the seeded split, and the held-out report."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rag.errors import BadInputError
from rag.evaluation.adaptive import Policy, adaptive_retrieval, learn_policy, split
from rag.evaluation.stats import (bootstrap_diff_independent, stratified_bootstrap_diff_independent,
                                  stratified_bootstrap_mean)


def test_threshold_on_a_hand_case():
    # rare facts: only retrieval answers them; popular facts: the model knows them, and retrieval distracts
    counts = [0, 1, 5, 20, 100, 1000]
    closed = [0, 0, 0, 1, 1, 1]
    rag = [1, 1, 1, 0, 0, 1]
    policy, acc = learn_policy(counts, closed, rag)
    assert policy.threshold == 20 and acc == 1.0  # retrieve for count < 20
    assert policy.retrieve([0, 19, 20, 5000]).tolist() == [True, True, False, False]
    assert "count < 20" in policy.describe()


def test_ties_prefer_less_retrieval_and_extremes():
    # retrieval never helps: never retrieve (threshold 0)
    p, acc = learn_policy([0, 3, 50], [1, 1, 0], [1, 0, 0])
    assert p.threshold == 0 and acc == pytest.approx(2 / 3)
    # retrieval always strictly better: always retrieve
    p, _ = learn_policy([0, 3, 50], [0, 0, 0], [1, 1, 1])
    assert math.isinf(p.threshold) and "always" in p.describe()


def test_unlinked_questions():
    counts = [None, None, 5, 500]
    closed = [0, 0, 0, 1]
    rag = [1, 1, 1, 0]
    p, acc = learn_policy(counts, closed, rag, unlinked="learn")
    assert p.unlinked_retrieve and acc == 1.0
    p, acc = learn_policy(counts, closed, rag, unlinked="closed")
    assert not p.unlinked_retrieve and acc == 0.5
    assert Policy(10, False).retrieve([None, 3]).tolist() == [False, True]
    with pytest.raises(BadInputError):
        learn_policy(counts, closed, rag, unlinked="maybe")


def test_split_is_seeded_and_order_free():
    qids = [f"q{i}" for i in range(101)]
    m = split(qids, 0.5, seed=1)
    assert m.sum() == 50 or m.sum() == 51
    m2 = split(list(reversed(qids)), 0.5, seed=1)
    assert {q for q, t in zip(qids, m) if t} == {q for q, t in zip(reversed(qids), m2) if t}
    assert not np.array_equal(m, split(qids, 0.5, seed=2))


def test_held_out_report():
    rng = np.random.default_rng(0)
    n = 400
    counts = rng.integers(0, 5000, n).tolist()
    closed = [float(c >= 100) for c in counts]  # known iff popular
    rag = [float(c < 1000) for c in counts]  # retrieval works for the tail only
    res = adaptive_retrieval([f"q{i}" for i in range(n)], counts, closed, rag, "bm25", seed=0, n_boot=500)
    assert res.n_train + res.n_test == n
    assert res.adaptive.mean == 1.0 and res.vs_always.mean > 0 and res.vs_never.mean > 0
    assert 100 < res.policy.threshold <= 1000
    assert 0 < res.fraction_retrieved < 1
    d = res.as_dict()
    assert d["policy"]["description"].startswith("retrieve when count <")
    with pytest.raises(BadInputError):
        adaptive_retrieval(["a"], [1], [0], [1], "bm25")


def test_stratified_bootstrap_weights_and_independent_diff():
    a, b = [1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]
    # weights equal to the group sizes: the plain mean of the pooled sample
    r = stratified_bootstrap_mean([a, b], [4, 8], seed=0)
    assert r.mean == pytest.approx(3 / 12) and r.n == 12 and r.lo <= r.mean <= r.hi
    # a bucket sampled at 4 of 400 counts 100x more than its sample size says
    r = stratified_bootstrap_mean([a, b], [400, 8], seed=0)
    assert r.mean == pytest.approx((400 * 0.5 + 8 * 0.125) / 408)
    assert stratified_bootstrap_mean([[], []], [1, 1]).n == 0
    assert stratified_bootstrap_mean([[], b], [5, 8]).mean == pytest.approx(0.125)  # empty groups dropped
    d = bootstrap_diff_independent([1] * 50 + [0] * 50, [0] * 100, seed=0)
    assert d.mean == 0.5 and 0.38 < d.lo < 0.5 < d.hi < 0.62
    # stratified and independent: each side weighted by the same populations before the difference
    d = stratified_bootstrap_diff_independent([a, b], [[0] * 4, [0] * 8], [400, 8], seed=0)
    assert d.mean == pytest.approx((400 * 0.5 + 8 * 0.125) / 408) and d.n == 24 and d.lo <= d.mean <= d.hi
    assert stratified_bootstrap_diff_independent([[], []], [a, b], [1, 1]).n == 0
