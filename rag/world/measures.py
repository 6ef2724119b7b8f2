"""The measures of Chang et al. (2024, "How Do Large Language Models Acquire Factual Knowledge During
Pretraining?") from per-step probe logs, with percentile-bootstrap intervals over the probed facts.

    u, L     the logged updates (increasing, from 0 = before the first update to U) and probe p's target
             log-probability after each, (n_logged, P): every update of each window after an injection (and the one
             before it) is logged, later ones log-spaced; a value between two logged updates is interpolated
    inj      the updates that carried the knowledge, 1-based (update u_i moves the model from state u_i - 1 to u_i)

    local acquisition maximum   t_LAM(p, i) = argmax of L[u, p] over the window u_i <= u <= u_i + w - 1 (cut at
                                the next injection and at the end of the log)
    effectivity                 E(p, i) = L[t_LAM, p] - L[u_i - 1, p]: the gain of one injection (a maximum over
                                the window: step-to-step noise biases it upwards; "effectivity_of_mean" takes the
                                maximum of the probes' mean curve instead, which averages the noise first)
    retention                   R(t) = mean_p (L[t_LAM + t, p] - L[u_1 - 1, p]) / mean_p (L[t_LAM, p] - L[u_1 - 1, p])
                                after the last injection (ratio of means: one probe's gain may be ~0)
    decay constant              a in R(t) ~ b - a ln t, least squares over log-spaced t in [1, t_max], with R²;
                                R reaches 0 at t = exp(b / a), the extrapolated learnability threshold. Fitted only
                                when the knowledge was acquired: the mean gain over the last window is above 0
    final gain                  L[U, p] - L[u_1 - 1, p]

Every mean comes with a 95% percentile-bootstrap interval over probes (facts), the probes resampled with
replacement and every measure recomputed on the replicate (n_boot replicates, seeded).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

N_BOOT = 1000


def fit_decay(t: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares fit r ~ b - a ln t for each row of r ((n_t,) or (n_rep, n_t)); returns (a, b, R²) arrays."""
    x = np.log(np.asarray(t, dtype=float))
    r = np.atleast_2d(np.asarray(r, dtype=float))
    xm = x.mean()
    dx = x - xm
    slope = (r - r.mean(1, keepdims=True)) @ dx / (dx @ dx)
    b = r.mean(1) - slope * xm
    resid = r - (b[:, None] + slope[:, None] * x[None, :])
    ss_tot = ((r - r.mean(1, keepdims=True)) ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 0, 1 - (resid ** 2).sum(1) / ss_tot, np.nan)
    return -slope, b, r2


def log_grid(t_max: int, n: int = 40) -> np.ndarray:
    """Integer steps 1..t_max spaced evenly in log t (so a fit against ln t weighs every decade alike)."""
    if t_max < 1:
        return np.zeros(0, dtype=int)
    return np.unique(np.round(np.geomspace(1, t_max, n)).astype(int))


def local_maxima(u: np.ndarray, L: np.ndarray, inj: Sequence[int], window: int) -> tuple[np.ndarray, np.ndarray]:
    """(t_LAM, effectivity), each (n_injections, P): the update of the window's maximum and its gain over the
    state before the injection."""
    U = int(u[-1])
    lam = np.zeros((len(inj), L.shape[1]), dtype=int)
    eff = np.zeros((len(inj), L.shape[1]))
    for i, ui in enumerate(inj):
        hi = min(ui + window - 1, U, (inj[i + 1] - 1) if i + 1 < len(inj) else U)
        rows = np.flatnonzero((u >= ui) & (u <= hi))
        seg = L[rows]
        lam[i] = u[rows][seg.argmax(0)]
        eff[i] = seg.max(0) - L[_row(u, ui - 1)]
    return lam, eff


def _row(u: np.ndarray, x: int) -> int:
    i = int(np.searchsorted(u, x))
    if i >= len(u) or u[i] != x:
        raise ValueError(f"update {x} is not in the log")
    return i


def _at(u: np.ndarray, L: np.ndarray, x: np.ndarray) -> np.ndarray:
    """L interpolated at updates x (n_x, P) per probe column: x[:, p] for probe p."""
    return np.stack([np.interp(x[:, p], u, L[:, p]) for p in range(L.shape[1])], axis=1)


def _ci(reps: np.ndarray) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return float("nan"), float("nan")
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(lo), float(hi)


def _stat(point: float, reps: np.ndarray, nd: int = 4) -> dict:
    lo, hi = _ci(reps)
    return {"mean": round(float(point), nd), "lo": round(lo, nd), "hi": round(hi, nd)}


def measure(u: np.ndarray, L: np.ndarray, inj: Sequence[int], window: int, interval: int | None = None,
            n_boot: int = N_BOOT, seed: int = 0, grid_points: int = 40) -> dict:
    """Every measure of one group of probes (one scenario and probe kind) from its log (u, L)."""
    u = np.asarray(u, dtype=int)
    L = np.asarray(L, dtype=float)
    U, P = int(u[-1]), L.shape[1]
    inj = [int(x) for x in inj]
    if not inj or inj[0] < 1 or inj[-1] > U:
        raise ValueError(f"injections {inj} must lie in 1..{U}")
    rng = np.random.default_rng(seed)
    W = rng.multinomial(P, np.full(P, 1.0 / P), size=n_boot).astype(float) / P  # (n_boot, P) resampling weights
    lam, eff = local_maxima(u, L, inj, window)
    base = L[_row(u, inj[0] - 1)]
    out: dict = {"n": P, "injections": inj}
    e = eff.mean(0)  # per probe, averaged over injections
    out["effectivity"] = _stat(e.mean(), W @ e)
    out["effectivity"]["per_injection"] = [round(float(x), 4) for x in eff.mean(1)]
    em_point, em_reps = np.zeros(len(inj)), np.zeros((n_boot, len(inj)))
    for i, ui in enumerate(inj):
        hi = min(ui + window - 1, U, (inj[i + 1] - 1) if i + 1 < len(inj) else U)
        rows = np.flatnonzero((u >= ui) & (u <= hi))
        gain = L[rows] - L[_row(u, ui - 1)]  # (n_rows, P)
        em_point[i] = gain.mean(1).max()
        em_reps[:, i] = (W @ gain.T).max(1)
    out["effectivity_of_mean"] = _stat(em_point.mean(), em_reps.mean(1))
    last = lam[-1]
    g0 = _at(u, L, last[None, :])[0] - base
    out["lam"] = {"gain": _stat(g0.mean(), W @ g0), "steps_after_injection": round(float((last - inj[-1]).mean()), 2)}
    final = L[-1] - base
    out["final_gain"] = _stat(final.mean(), W @ final)
    if interval is not None and inj[-1] - 1 + interval <= U:  # just before the next injection would have come
        nxt = _at(u, L, np.full((1, P), inj[-1] - 1 + interval))[0] - base
        out["gain_one_interval_after"] = _stat(nxt.mean(), W @ nxt)
    t_max = int(U - last.max())
    t = log_grid(t_max, grid_points)
    if len(t) < 3:
        out["retention"] = None
        out["decay"] = {"reason": f"only {t_max} steps after the last local maximum"}
        return out
    G = (_at(u, L, last[None, :] + t[:, None]) - base).T  # (P, n_t): gain t updates after each probe's t_LAM
    with np.errstate(invalid="ignore", divide="ignore"):
        r = G.mean(0) / g0.mean()
        r_reps = (W @ G) / (W @ g0)[:, None]
    out["retention"] = {"t": t.tolist(), "mean": [round(float(x), 4) for x in r]}
    # acquired: the gain averaged over the last window (unlike its maximum, not biased upwards by noise) is above 0
    hi = min(inj[-1] + window - 1, U)
    rows = np.flatnonzero((u >= inj[-1]) & (u <= hi))
    wg = (L[rows] - base).mean(0)
    out["window_gain"] = _stat(wg.mean(), W @ wg)
    if out["window_gain"]["lo"] <= 0:
        out["decay"] = {"reason": "not acquired: the mean gain over the window after the last injection is not above 0"}
        return out
    a, b, r2 = fit_decay(t, r)
    ra, rb, _ = fit_decay(t, r_reps)
    lo, hi = _ci(ra)
    with np.errstate(over="ignore"):
        x0 = float(np.exp(b[0] / a[0])) if a[0] > 0 else float("inf")
    out["decay"] = {"a": round(float(a[0]), 4), "lo": round(lo, 4), "hi": round(hi, 4), "b": round(float(b[0]), 4),
                    "r2": round(float(r2[0]), 4), "x_intercept": round(x0, 1) if np.isfinite(x0) else None,
                    "t_max": t_max}
    return out
