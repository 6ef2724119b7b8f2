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
