"""Gold-answer log-probability per bucket and mode: the smooth measure beside exact match.

A record's `gold_logprob` is the summed log-probability (natural log) of its best-scoring gold alias, teacher-forced
after the very prompt the reader answered (rag.readers.base.Reader.generate_scored_batch). Per report bucket and
mode, over the questions that were scored:

    logprob.json   {"buckets": [{bucket, mode, n, n_records, mean, lo, hi, per_token: {mean, lo, hi},
                                 em: {mean, lo, hi}}], "n_boot", "unscored"}
    summary.md     the "Gold-answer log-probability" section (this module's `to_markdown`)
    plots/logprob.png   EM and mean gold log-probability per bucket, side by side

Means are unweighted within a bucket (as the per-bucket EM rows); intervals are 95% percentile bootstraps. The EM
beside each row is computed on the same scored questions, so the two intervals can be compared.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.evaluation.stats import bootstrap_mean
from rag.evaluation.summary import Bucketing

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.run_folder import Run


def _rate(values: list[float], n_boot: int, seed: int) -> dict:
    r = bootstrap_mean(values, n_boot=n_boot, seed=seed)
    return {"mean": r.mean, "lo": r.lo, "hi": r.hi}


def logprob_table(run: "Run", edges: Sequence[int] | None = None) -> dict:
    """Per report bucket and mode: mean gold log-probability (summed and per token) and EM, with intervals."""
    cfg = run.config
    bk = Bucketing.of(run, edges)
    by_mode = run.by_mode()
    rows, unscored = [], {}
    for mode in run.modes:
        recs = by_mode[mode]
        scored = {q: r for q, r in recs.items() if r.gold_logprob is not None and r.gold_tokens}
        unscored[mode] = len(recs) - len(scored)
        for b in bk.buckets.all_labels:
            mine = [r for q, r in scored.items() if bk.label_of.get(q) == b]
            n_records = sum(1 for q in recs if bk.label_of.get(q) == b)
            if not mine:
                rows.append({"bucket": b, "mode": mode, "n": 0, "n_records": n_records})
                continue
            lp = [r.score("logprob") for r in mine]
            per = [r.score("logprob_per_token") for r in mine]
            em = [r.em for r in mine]
            rows.append({"bucket": b, "mode": mode, "n": len(mine), "n_records": n_records,
                         **_rate(lp, cfg.n_boot, cfg.seed), "per_token": _rate(per, cfg.n_boot, cfg.seed),
                         "em": _rate(em, cfg.n_boot, cfg.seed)})
    return {"buckets": rows, "n_boot": cfg.n_boot, "unscored": unscored,
            "scored": any(r["n"] for r in rows)}


def _ci(d: dict, digits: int = 2, scale: float = 1.0) -> str:
    if d is None or d.get("mean") is None or (isinstance(d["mean"], float) and math.isnan(d["mean"])):
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(d['mean'] * scale)} [{f.format(d['lo'] * scale)}, {f.format(d['hi'] * scale)}]"


def to_markdown(doc: dict, plot: str | None = None) -> str:
    lines = ["## Gold-answer log-probability", ""]
    if not doc.get("scored"):
        return "\n".join(lines + ["Not recorded: the reader did not score the gold answers in this run "
                                  "(reader.score_gold false, or a backend that cannot score).", ""])
    lines += ["The log-probability (natural log) of the best-scoring gold alias, teacher-forced after the very prompt "
              "the reader answered (the `A:` continuation, up to the newline): summed over its tokens and per token. "
              "Knowledge shows here before the answer becomes the greedy output. EM is on the same scored questions; "
              f"95% percentile-bootstrap intervals ({doc['n_boot']} resamples).", ""]
    if plot:
        lines += [f"![EM and gold log-probability by count]({plot})", ""]
    lines += ["| bucket | mode | n | log-prob (sum) | log-prob per token | EM % |", "|---|---|---|---|---|---|"]
    for r in doc["buckets"]:
        if r["n"]:
            lines.append(f"| {r['bucket']} | {r['mode']} | {r['n']} | {_ci(r)} | {_ci(r['per_token'])} | "
                         f"{_ci(r['em'], 1, 100.0)} |")
    missing = {m: n for m, n in doc["unscored"].items() if n}
    if missing:
        lines += ["", "Records without a score (a backend that cannot score, or no literal gold alias): "
                  + ", ".join(f"{m}: {n}" for m, n in missing.items()) + "."]
    return "\n".join(lines + [""])


def plot_logprob(doc: dict, path: str | Path, title: str = "") -> Path:
    """Two panels over the count buckets: EM (%) and mean gold log-probability, each mode with its interval."""
    from rag.buckets import UNLINKED
    from rag.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    modes = list(dict.fromkeys(r["mode"] for r in doc["buckets"]))
    buckets = list(dict.fromkeys(r["bucket"] for r in doc["buckets"]))
    xs = [i + (0.5 if b == UNLINKED else 0.0) for i, b in enumerate(buckets)]
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.2 * len(buckets) + 2), 4.0))
    width = 0.6 / max(1, len(modes))
    for j, mode in enumerate(modes):
        off = (j - (len(modes) - 1) / 2) * width
        got = {r["bucket"]: r for r in doc["buckets"] if r["mode"] == mode and r["n"]}
        for ax, key, scale in ((axes[0], "em", 100.0), (axes[1], None, 1.0)):
            pts = [(x + off, (got[b][key] if key else got[b])) for x, b in zip(xs, buckets) if b in got]
            if not pts:
                continue
            m = [d["mean"] * scale for _, d in pts]
            ax.errorbar([p for p, _ in pts], m, yerr=[[max(0.0, (d["mean"] - d["lo"]) * scale) for _, d in pts],
                                                      [max(0.0, (d["hi"] - d["mean"]) * scale) for _, d in pts]],
                        marker="o", capsize=3, label=mode)
    labels = []
    for b in buckets:
        n = next((r["n"] for r in doc["buckets"] if r["bucket"] == b and r["mode"] == modes[0]), 0)
        labels.append(f"{b}\nn={n}")
    for ax, ylabel in ((axes[0], "EM (%)"), (axes[1], "gold log-probability (nats, summed)")):
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("relevant-document count")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)
