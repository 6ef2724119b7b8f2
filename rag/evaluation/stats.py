"""Rates with confidence intervals. Every figure a report shows carries n and a 95% interval."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rate:
    n: int
    mean: float  # NaN when n == 0
    lo: float
    hi: float

    def fmt(self, pct: bool = True) -> str:
        if self.n == 0:
            return "n/a"
        s = 100.0 if pct else 1.0
        return f"{self.mean * s:.1f} [{self.lo * s:.1f}, {self.hi * s:.1f}]"


def bootstrap_mean(values, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Rate:
    """Percentile bootstrap CI of the mean of `values` (0/1 outcomes or scores); vectorised."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return Rate(0, float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    # (n_boot, n) resample indices; chunked so memory stays bounded for large n
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // n)
    for s in range(0, n_boot, step):
        e = min(n_boot, s + step)
        means[s:e] = x[rng.integers(0, n, size=(e - s, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Rate(n, float(x.mean()), float(lo), float(hi))


def bootstrap_diff(a, b, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Rate:
    """Paired bootstrap CI of mean(a - b) over the same questions (e.g. RAG minus closed-book)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    return bootstrap_mean(a - b, n_boot=n_boot, alpha=alpha, seed=seed)


def wilson(successes: int, n: int, z: float = 1.959964) -> Rate:
    """Wilson score interval for a binomial proportion (closed form; used to check the bootstrap)."""
    if n == 0:
        return Rate(0, float("nan"), float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(n, p, float(centre - half), float(centre + half))


def _boot_means(x: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(n_boot,) means of resamples of x, chunked so memory stays bounded."""
    n = x.size
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // max(n, 1))
    for s in range(0, n_boot, step):
        e = min(n_boot, s + step)
        means[s:e] = x[rng.integers(0, n, size=(e - s, n))].mean(axis=1)
    return means


def _stratified(groups, weights, n_boot: int, rng) -> tuple[int, float, np.ndarray] | None:
    """(n, weighted mean, (n_boot,) weighted bootstrap means), or None when no stratum has data and weight."""
    pairs = [(np.asarray(g, dtype=float), float(w)) for g, w in zip(groups, weights)]
    pairs = [(g, w) for g, w in pairs if g.size and w > 0]
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    mean = sum(w / total * g.mean() for g, w in pairs)
    boots = sum(w / total * _boot_means(g, n_boot, rng) for g, w in pairs)
    return int(sum(g.size for g, _ in pairs)), float(mean), boots


def stratified_bootstrap_mean(groups, weights, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Rate:
    """CI of sum_s w_s * mean(group_s): resample within each stratum (e.g. count bucket), weight by population.

    This is the estimate of the whole population's rate from a stratified sample; with weights proportional
    to the group sizes it equals the plain mean. Empty groups are dropped and the weights renormalised.
    """
    got = _stratified(groups, weights, n_boot, np.random.default_rng(seed))
    if got is None:
        return Rate(0, float("nan"), float("nan"), float("nan"))
    n, mean, boots = got
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Rate(n, mean, float(lo), float(hi))


def stratified_bootstrap_diff_independent(groups_a, groups_b, weights, n_boot: int = 2000, alpha: float = 0.05,
                                          seed: int = 0) -> Rate:
    """CI of the weighted mean of a minus that of b, two independent stratified samples with the same weights."""
    rng = np.random.default_rng(seed)
    a, b = _stratified(groups_a, weights, n_boot, rng), _stratified(groups_b, weights, n_boot, rng)
    if a is None or b is None:
        return Rate(0, float("nan"), float("nan"), float("nan"))
    d = a[2] - b[2]
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return Rate(a[0] + b[0], a[1] - b[1], float(lo), float(hi))


def bootstrap_diff_independent(a, b, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Rate:
    """CI of mean(a) - mean(b) for two independent samples (different questions); n is len(a) + len(b)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return Rate(0, float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    d = _boot_means(a, n_boot, rng) - _boot_means(b, n_boot, rng)
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return Rate(int(a.size + b.size), float(a.mean() - b.mean()), float(lo), float(hi))
