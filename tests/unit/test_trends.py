"""Slopes against log10(count + 1) with stratified-bootstrap intervals, paired differences, and McNemar."""
from __future__ import annotations

import numpy as np
import pytest

from rag.buckets import Buckets
from rag.evaluation.trends import design_weights, difference, fit_slopes, log_count, mcnemar
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)


def population(seed: int, n: int = 20_000):
    rng = np.random.default_rng(seed)
    counts = np.floor(10 ** rng.uniform(0, 4, n) - 1).astype(int)  # spread over 0 .. 9,999
    return counts


def simulate(seed: int, slope: float, kind: str, per_bucket: int = 40, n_boot: int = 300):
    counts = population(1000 + seed)
    rng = np.random.default_rng(seed)
    x_all = log_count(counts)
    labels = np.array(Buckets((0, 1, 10, 100, 1000)).assign(counts.tolist()), dtype=object)
    pops = {b: int((labels == b).sum()) for b in set(labels.tolist())}
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == b), per_bucket, replace=False) for b in sorted(pops)])
    x = x_all[idx]
    if kind == "logistic":
        y = (rng.random(idx.size) < 1 / (1 + np.exp(-(-1.5 + slope * x)))).astype(float)
    else:
        y = -6 + slope * x + rng.normal(0, 2, idx.size)
    (s,), _ = fit_slopes(x, [y], labels[idx].tolist(), pops, kind, n_boot=n_boot, seed=seed)
    return s


@pytest.mark.parametrize("kind", ["logistic", "linear"])
def test_slope_intervals_cover_the_true_slope_about_95_percent(kind):
    true = 0.8
    fits = [simulate(seed, true, kind) for seed in range(200)]
    hits = sum(s.lo <= true <= s.hi for s in fits)
    assert 0.88 * 200 <= hits <= 0.99 * 200, hits


def test_weights_and_paired_difference():
    w = design_weights(["a", "a", "b"], {"a": 100, "b": 10})
    assert w.tolist() == [50.0, 50.0, 10.0]
    rng = np.random.default_rng(0)
    x = np.repeat([0.0, 1.0, 2.0, 3.0], 60)
    strata = np.repeat(["0", "1-9", "10-99", "100-999"], 60).tolist()
    closed = (rng.random(x.size) < 1 / (1 + np.exp(-(-2 + 1.2 * x)))).astype(float)
    flat = (rng.random(x.size) < 0.6).astype(float)
    (sc, sf), (bc, bf) = fit_slopes(x, [closed, flat], strata, {}, "logistic", n_boot=500)
    assert sc.excludes_zero and sc.slope > 0.5 and not sf.excludes_zero
    d = difference(sf, sc, bf, bc)
    assert d.hi < 0 and d.slope == pytest.approx(sf.slope - sc.slope)  # retrieval flattened the curve


def test_mcnemar_exact():
    closed = [1] * 10 + [0] * 10
    rag = [1] * 10 + [1] * 8 + [0] * 2
    r = mcnemar(closed, rag)
    assert (r["closed_only"], r["retrieval_only"]) == (0, 8)
    assert r["p"] == pytest.approx(2 / 2**8)
    assert mcnemar([1, 0], [1, 0])["p"] == 1.0
    # b = 3, c = 5: two-sided exact p = 2 * P(X <= 3), X ~ Bin(8, 1/2) = 2 * 93/256
    assert mcnemar([1] * 3 + [0] * 5, [0] * 3 + [1] * 5)["p"] == pytest.approx(2 * 93 / 256)


def test_a_run_reports_its_trends(world, tmp_path):  # noqa: F811
    import json

    from rag.evaluation.config import load_config
    from rag.evaluation.runner import run_eval

    run_eval(load_config(write_config(world, tmp_path / "run")), progress=False, reader=CountingReader())
    t = json.loads((tmp_path / "run" / "trends.json").read_text())
    assert set(t["slopes"]) == {"closed", "rag:bm25"} and t["n_questions"] == 10 and t["unlinked_excluded"] == 2
    closed = t["slopes"]["closed"]
    assert closed["slope"] > 0 and closed["lo"] <= closed["slope"] <= closed["hi"]  # the fake reader knows popular facts
    assert t["differences"]["rag:bm25"]["slope"] == pytest.approx(t["slopes"]["rag:bm25"]["slope"] - closed["slope"])
    assert sum(r["retrieval_only"] for r in t["mcnemar"]["rag:bm25"].values()) == 9  # 7 linked + 2 unlinked
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "## Trends: accuracy against log10(count + 1)" in md and "| rag:bm25 - closed |" in md
