import numpy as np
import pytest

from rag.buckets import UNLINKED, Buckets
from rag.errors import BadInputError
from rag.evaluation.sampling import stratified_sample
from rag.evaluation.stats import bootstrap_diff, bootstrap_mean, wilson


def test_default_bucket_edges_and_labels():
    b = Buckets()
    assert b.labels == ["0", "1-9", "10-99", "100-999", ">=1000"]
    got = b.assign([0, 1, 9, 10, 99, 100, 999, 1000, 10**6, None, float("nan")])
    assert got == ["0", "1-9", "1-9", "10-99", "10-99", "100-999", "100-999", ">=1000", ">=1000", UNLINKED, UNLINKED]


def test_custom_edges_and_bad_edges():
    assert Buckets((0, 5)).assign([4, 5]) == ["0-4", ">=5"]
    with pytest.raises(BadInputError):
        Buckets((0, 10, 5))
    with pytest.raises(BadInputError):
        Buckets((1, 10)).assign([0])


def test_bootstrap_matches_wilson_on_known_case():
    x = np.array([1] * 30 + [0] * 70)
    boot = bootstrap_mean(x, n_boot=4000, seed=1)
    w = wilson(30, 100)
    assert boot.n == 100 and boot.mean == pytest.approx(0.3)
    # Textbook Wilson 95% interval for 30/100 is [0.219, 0.396]; the percentile bootstrap is close to it.
    assert w.lo == pytest.approx(0.2189, abs=1e-3) and w.hi == pytest.approx(0.3958, abs=1e-3)
    assert abs(boot.lo - w.lo) < 0.02 and abs(boot.hi - w.hi) < 0.02


def test_bootstrap_empty_and_constant():
    e = bootstrap_mean([])
    assert e.n == 0 and np.isnan(e.mean) and e.fmt() == "n/a"
    c = bootstrap_mean([1, 1, 1])
    assert (c.lo, c.mean, c.hi) == (1.0, 1.0, 1.0)


def test_paired_difference():
    a = [1, 1, 0, 1] * 25
    b = [0, 1, 0, 0] * 25
    d = bootstrap_diff(a, b, seed=0)
    assert d.mean == pytest.approx(0.5) and d.lo > 0.3


def test_stratified_sampling_is_deterministic_and_nested():
    qids = [f"q{i}" for i in range(100)]
    buckets = ["a" if i % 3 else "b" for i in range(100)]
    s1, info = stratified_sample(qids, buckets, 5, seed=7)
    s2, _ = stratified_sample(list(reversed(qids)), list(reversed(buckets)), 5, seed=7)
    assert sorted(s1) == sorted(s2) and len(s1) == 10
    assert info["a"].population == 66 and info["a"].sampled == 5
    bigger, _ = stratified_sample(qids, buckets, 8, seed=7)
    assert set(s1) <= set(bigger)
    other, _ = stratified_sample(qids, buckets, 5, seed=8)
    assert set(other) != set(s1)
    full, info_full = stratified_sample(qids, buckets, None)
    assert full == qids and info_full["b"].fraction == 1.0
