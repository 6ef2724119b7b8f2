"""Trends tested, not read off bars: accuracy and gold log-probability against log10(count + 1), with intervals.

    x = log10(count + 1) over the linked questions of a run (unlinked ones have no count)
    correctness (0/1)      logistic fit   logit P(right) = a + slope * x
    gold log-probability   linear fit     logprob        = a + slope * x
Each question is weighted by its sampling stratum's population share (population_s / sampled_s), so a stratified
sample estimates the slope of the whole QA set. Intervals are percentile bootstraps that resample questions within
each stratum (the sampling design); a retriever's slope minus closed-book's resamples the same questions for both
(paired), which is Kandpal et al.'s "retrieval flattens the curve" as one number with an interval. Per bucket, an
exact McNemar test compares each retriever with closed-book on the questions both answered.

Every fit runs for all bootstrap replicates at once: replicate b is the fit with multiplicity weights c_b (how
often each question was drawn) times the design weights, solved by a vectorised IRLS on (B, n) arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

RIDGE = 1e-3  # L2 penalty on the slope, per unit of total weight: keeps a separable sample's fit finite


@dataclass(frozen=True)
class Slope:
    """A fitted slope (per log10 unit of count + 1) with its percentile-bootstrap interval."""

    n: int
    slope: float
    lo: float
    hi: float
    intercept: float = float("nan")

    @property
    def excludes_zero(self) -> bool:
        return self.n > 0 and (self.lo > 0 or self.hi < 0)

    def fmt(self, digits: int = 3) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.slope:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"

    def as_dict(self) -> dict:
        return {"n": self.n, "slope": self.slope, "lo": self.lo, "hi": self.hi, "intercept": self.intercept,
                "excludes_zero": self.excludes_zero}


NA = Slope(0, float("nan"), float("nan"), float("nan"))


def log_count(counts: Sequence[int]) -> np.ndarray:
    return np.log10(np.asarray(counts, dtype=float) + 1.0)


def design_weights(strata: Sequence[str], populations: dict[str, int]) -> np.ndarray:
    """population_s / sampled_s for each question of stratum s (a stratum missing from `populations` weighs
    as its sample size: the plain mean)."""
    strata = list(strata)
    n_s: dict[str, int] = {}
    for s in strata:
        n_s[s] = n_s.get(s, 0) + 1
    return np.array([populations.get(s, n_s[s]) / n_s[s] for s in strata], dtype=float)


def resample_counts(strata: Sequence[str], n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) multiplicities: each replicate draws every stratum's questions with replacement."""
    strata = np.asarray(list(strata), dtype=object)
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, len(strata)))
    for s in sorted(set(strata.tolist())):
        idx = np.flatnonzero(strata == s)
        draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
        for b in range(n_boot):  # bincount per replicate: n_boot x strata calls of C speed
            out[b, idx] += np.bincount(draws[b], minlength=idx.size)
    return out


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Weighted logistic fits for each row of w (B, n): (intercepts, slopes), each (B,)."""
    B = w.shape[0]
    a, b = np.zeros(B), np.zeros(B)
    ridge = RIDGE * w.sum(axis=1)
    for _ in range(iters):
        eta = a[:, None] + b[:, None] * x[None, :]
        p = 1.0 / (1.0 + np.exp(-np.clip(eta, -30, 30)))
        g = w * (y[None, :] - p)
        h = w * p * (1 - p) + 1e-12
        g0, g1 = g.sum(1), (g * x).sum(1) - ridge * b
        h00, h01, h11 = h.sum(1), (h * x).sum(1), (h * x * x).sum(1) + ridge
        det = h00 * h11 - h01 * h01
        da, db = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        a, b = a + da, b + db
        if np.max(np.abs(db)) < 1e-8 and np.max(np.abs(da)) < 1e-8:
            break
    return a, b


def _linear(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sw = w.sum(1)
    mx, my = (w * x).sum(1) / sw, (w * y).sum(1) / sw
    sxx = (w * (x[None, :] - mx[:, None]) ** 2).sum(1)
    sxy = (w * (x[None, :] - mx[:, None]) * (y[None, :] - my[:, None])).sum(1)
    b = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1), np.nan)
    return my - b * mx, b


FITS = {"logistic": _logistic, "linear": _linear}


def fit_slopes(x, ys: Sequence[Sequence[float]], strata: Sequence[str], populations: dict[str, int], kind: str,
               n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[list[Slope], list[np.ndarray]]:
    """Slopes of each outcome vector in `ys` against `x` on the same questions (their bootstrap replicates share
    the resampled questions, so differences between them are paired). Returns (slopes, replicate slopes)."""
    x = np.asarray(x, dtype=float)
    if x.size < 3 or np.ptp(x) == 0:
        return [NA for _ in ys], [np.full(n_boot, np.nan) for _ in ys]
    wd = design_weights(strata, populations)
    wd = wd / wd.mean()
    reps = resample_counts(strata, n_boot, seed) * wd[None, :]
    fit = FITS[kind]
    out, boots = [], []
    for y in ys:
        y = np.asarray(y, dtype=float)
        a0, b0 = fit(x, y, wd[None, :])
        _, bb = fit(x, y, reps)
        lo, hi = np.nanquantile(bb, [alpha / 2, 1 - alpha / 2])
        out.append(Slope(int(x.size), float(b0[0]), float(lo), float(hi), float(a0[0])))
        boots.append(bb)
    return out, boots


def difference(a: Slope, b: Slope, boot_a: np.ndarray, boot_b: np.ndarray, alpha: float = 0.05) -> Slope:
    """Slope a minus slope b from paired replicates."""
    if a.n == 0 or b.n == 0:
        return NA
    d = boot_a - boot_b
    lo, hi = np.nanquantile(d, [alpha / 2, 1 - alpha / 2])
    return Slope(a.n, a.slope - b.slope, float(lo), float(hi))


def mcnemar(closed: Sequence[float], other: Sequence[float]) -> dict:
    """Exact two-sided McNemar test on paired 0/1 outcomes: b = right closed-book only, c = right with
    retrieval only; p = P(Binomial(b + c, 1/2) as extreme as observed)."""
    x = np.asarray(closed, dtype=float) > 0.5
    z = np.asarray(other, dtype=float) > 0.5
    b, c = int((x & ~z).sum()), int((~x & z).sum())
    n = b + c
    if n == 0:
        return {"n": int(x.size), "closed_only": 0, "retrieval_only": 0, "p": 1.0}
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return {"n": int(x.size), "closed_only": b, "retrieval_only": c, "p": min(1.0, 2.0 * tail)}


def predict(s: Slope, x: np.ndarray, kind: str) -> np.ndarray:
    """The fitted curve at x (probability for logistic)."""
    eta = s.intercept + s.slope * np.asarray(x, dtype=float)
    return 1.0 / (1.0 + np.exp(-eta)) if kind == "logistic" else eta


# --- a run's trends ----------------------------------------------------------------------------------------------


def run_trends(run, n_boot: int | None = None) -> dict:
    """Per mode, the correctness slope over the run's linked questions (logistic; cfg.metric, or EM when the
    metric is F1), every retriever's slope minus closed-book's (paired), and per-bucket McNemar tests."""
    from rag.buckets import Buckets

    cfg, sel = run.config, run.selection
    measure = cfg.metric if cfg.metric in ("em", "contains") else "em"
    n_boot = n_boot or cfg.n_boot
    by_mode = run.by_mode()
    closed = by_mode["closed"]
    strata_edges = Buckets(sel.buckets)
    pops = sel.populations(strata_edges)
    # the questions every mode answered, linked only: the slopes of all modes are fitted on the same questions
    qids = [q for q in sel.qids if q in closed and closed[q].count is not None
            and all(q in by_mode[m] for m in run.modes)]
    out = {"measure": measure, "n_questions": len(qids), "n_boot": n_boot, "x": "log10(count + 1)",
           "slopes": {}, "differences": {}, "mcnemar": {}}
    if not qids:
        return out
    counts = [closed[q].count for q in qids]
    x = log_count(counts)
    strata = strata_edges.assign(counts)
    ys = [[by_mode[m][q].score(measure) for q in qids] for m in run.modes]
    slopes, boots = fit_slopes(x, ys, strata, pops, "logistic", n_boot=n_boot, seed=cfg.seed)
    for m, s in zip(run.modes, slopes):
        out["slopes"][m] = s.as_dict()
    for i, m in enumerate(run.modes[1:], 1):
        out["differences"][m] = difference(slopes[i], slopes[0], boots[i], boots[0]).as_dict()
    labels = Buckets(tuple(cfg.buckets)).assign([by_mode["closed"][q].count for q in sel.qids if q in closed])
    label_of = dict(zip([q for q in sel.qids if q in closed], labels))
    for m in run.modes[1:]:
        rows = {}
        for b in [*Buckets(tuple(cfg.buckets)).all_labels]:
            both = [q for q, lb in label_of.items() if lb == b and q in by_mode[m]]
            if both:
                rows[b] = mcnemar([closed[q].score(measure) for q in both], [by_mode[m][q].score(measure) for q in both])
        out["mcnemar"][m] = rows
    out["unlinked_excluded"] = sum(1 for q in sel.qids if q in closed and closed[q].count is None)
    # the gold answer's log-probability (linear), over the questions scored in every mode
    lq = [i for i, q in enumerate(qids) if all(by_mode[m][q].gold_logprob is not None for m in run.modes)]
    out["logprob"] = {"n_questions": len(lq), "slopes": {}, "differences": {}}
    if len(lq) >= 3:
        idx = np.array(lq)
        ys = [[by_mode[m][qids[i]].gold_logprob for i in lq] for m in run.modes]
        slopes, boots = fit_slopes(x[idx], ys, [strata[i] for i in lq], pops, "linear", n_boot=n_boot, seed=cfg.seed)
        for m, s in zip(run.modes, slopes):
            out["logprob"]["slopes"][m] = s.as_dict()
        for i, m in enumerate(run.modes[1:], 1):
            out["logprob"]["differences"][m] = difference(slopes[i], slopes[0], boots[i], boots[0]).as_dict()
    return out


def trends_markdown(t: dict) -> str:
    """The Trends section of summary.md."""
    lines = ["## Trends: accuracy against log10(count + 1)", ""]
    if not t.get("slopes"):
        return "\n".join(lines + ["No linked question has a record in every mode: nothing to fit.", ""])
    lines += [f"Logistic fits of {t['measure'].upper()} on x = log10(count + 1) over the {t['n_questions']} linked "
              f"questions answered in every mode ({t.get('unlinked_excluded', 0)} unlinked left out), each weighted by "
              f"its sampling bucket's population share; 95% percentile-bootstrap intervals ({t['n_boot']} resamples "
              "within buckets). A slope is in log-odds per tenfold count; an interval that excludes 0 is a tested trend.",
              "", "| system | slope | 95% CI | excludes 0 |", "|---|---|---|---|"]
    for m, s in t["slopes"].items():
        lines.append(f"| {m} | {s['slope']:+.3f} | [{s['lo']:+.3f}, {s['hi']:+.3f}] | {'yes' if s['excludes_zero'] else 'no'} |")
    if t["differences"]:
        lines += ["", "Retrieval minus closed-book slope (paired over the same resampled questions; negative: retrieval "
                  "flattens the curve):", "", "| system | difference | 95% CI | excludes 0 |", "|---|---|---|---|"]
        for m, s in t["differences"].items():
            lines.append(f"| {m} - closed | {s['slope']:+.3f} | [{s['lo']:+.3f}, {s['hi']:+.3f}] | "
                         f"{'yes' if s['excludes_zero'] else 'no'} |")
    lp = t.get("logprob") or {}
    if lp.get("slopes"):
        lines += ["", f"Linear fits of the gold answer's log-probability (nats, summed over its tokens) on the same x, "
                  f"over the {lp['n_questions']} linked questions scored in every mode (same weights and resampling):",
                  "", "| system | slope (nats per tenfold count) | 95% CI | excludes 0 |", "|---|---|---|---|"]
        for m, s in lp["slopes"].items():
            lines.append(f"| {m} | {s['slope']:+.3f} | [{s['lo']:+.3f}, {s['hi']:+.3f}] | {'yes' if s['excludes_zero'] else 'no'} |")
        for m, s in lp["differences"].items():
            lines.append(f"| {m} - closed | {s['slope']:+.3f} | [{s['lo']:+.3f}, {s['hi']:+.3f}] | "
                         f"{'yes' if s['excludes_zero'] else 'no'} |")
    if t["mcnemar"]:
        lines += ["", "Exact McNemar test per bucket (questions right closed-book only vs right with retrieval only):", "",
                  "| system | bucket | n | closed only | retrieval only | p |", "|---|---|---|---|---|---|"]
        for m, rows in t["mcnemar"].items():
            for b, r in rows.items():
                lines.append(f"| {m} | {b} | {r['n']} | {r['closed_only']} | {r['retrieval_only']} | {r['p']:.3g} |")
    return "\n".join(lines + [""])


def bucket_centres(edges: Sequence[int]) -> list[float]:
    """log10(count + 1) at the middle of each count bucket [e_i, e_i+1) (the last: half a decade above its edge)."""
    lo = [math.log10(e + 1) for e in edges]
    return [(a + b) / 2 for a, b in zip(lo, lo[1:])] + [lo[-1] + 0.5]


def fitted_curves(run, edges: Sequence[int] | None = None, trends: dict | None = None) -> dict[str, list[float]]:
    """system -> the fitted accuracy (or, with metric logprob, gold log-probability) at each count bucket's
    centre, for the accuracy plot."""
    t = trends if trends is not None else run_trends(run)
    xs = np.array(bucket_centres(tuple(edges) if edges is not None else tuple(run.config.buckets)))
    lp = run.config.metric == "logprob"
    slopes = t.get("logprob", {}).get("slopes", {}) if lp else t.get("slopes", {})
    out = {}
    for m, d in slopes.items():
        if d["n"]:
            out[m] = predict(Slope(d["n"], d["slope"], d["lo"], d["hi"], d["intercept"]), xs,
                             "linear" if lp else "logistic").tolist()
    return out
