"""PNG plots of a run summary (matplotlib, Agg backend, imported lazily: pip install 'rag[plots]').

accuracy.png  accuracy per count bucket, closed-book and RAG with each retriever, 95% CI bars: the analogue
              of Kandpal et al. (2023) Figure 1 (x: relevant-document count bucket on a log scale); dashed: the
              logistic fit of accuracy on log10(count + 1) at each bucket's centre
recall.png    retriever recall@k per count bucket, one panel per retriever, one line per k
attribution.png  failure attribution (rag.evaluation.attribution): per count bucket a stacked bar of the six
              outcomes' shares, one panel per retriever
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.buckets import UNLINKED
from rag.errors import require
from rag.evaluation.summary import ALL, LINKED, Summary

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.attribution import AttributionRow


def pyplot():
    mpl = require("matplotlib", "plots")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _xlabels(summary: Summary, buckets: list[str], system: str, measure: str) -> list[str]:
    out = []
    for b in buckets:
        row = summary.get(b, system, measure)
        out.append(f"{b}\nn={row.n if row else 0}")
    return out


def _series(summary: Summary, buckets: list[str], system: str, measure: str):
    """(means, lower errors, upper errors) in percent (log-probabilities in nats); NaN where a bucket is empty."""
    nan = float("nan")
    s = 1.0 if measure.startswith("logprob") else 100.0
    means, lo, hi = [], [], []
    for b in buckets:
        row = summary.get(b, system, measure)
        if row is None or row.n == 0:
            means.append(nan), lo.append(0.0), hi.append(0.0)
            continue
        r = row.rate
        means.append(s * r.mean)
        lo.append(s * max(r.mean - r.lo, 0.0))
        hi.append(s * max(r.hi - r.mean, 0.0))
    return means, lo, hi


def _buckets(summary: Summary) -> list[str]:
    # the count buckets then "unlinked"; the pooled rows are in the tables, not the plot
    return [b for b in summary.buckets if b not in (LINKED, ALL)]


def _positions(buckets: list[str]) -> list[float]:
    # "unlinked" is not on the count scale: set apart to the right, and not joined by the line
    return [i + (0.5 if b == UNLINKED else 0.0) for i, b in enumerate(buckets)]


def _draw(ax, xs, buckets, means, lo, hi, label, offset=0.0):
    """Count buckets joined by a line, "unlinked" as a lone point of the same colour."""
    lin = [i for i, b in enumerate(buckets) if b != UNLINKED]
    unl = [i for i, b in enumerate(buckets) if b == UNLINKED]
    pick = lambda seq, idx: [seq[i] for i in idx]  # noqa: E731
    line = ax.errorbar([xs[i] + offset for i in lin], pick(means, lin), yerr=[pick(lo, lin), pick(hi, lin)],
                       marker="o", capsize=3, linestyle="-", label=label)
    if unl:
        ax.errorbar([xs[i] + offset for i in unl], pick(means, unl), yerr=[pick(lo, unl), pick(hi, unl)],
                    marker="s", capsize=3, linestyle="none", color=line[0].get_color())
    return line[0].get_color()


def _separator(ax, buckets: list[str]) -> None:
    if UNLINKED in buckets and len(buckets) > 1:
        i = buckets.index(UNLINKED)
        ax.axvline(i - 0.25, color="grey", linestyle=":", linewidth=1)


def plot_accuracy(summary: Summary, path: str | Path, curves: dict[str, list[float]] | None = None) -> Path:
    """`curves`: system -> the fitted logistic curve's accuracy (0..1) at each count bucket's centre (in the
    order of the count buckets), drawn dashed in the system's colour (rag.evaluation.trends)."""
    plt = pyplot()
    buckets = _buckets(summary)
    systems = [("closed", "closed-book")] + [(f"rag:{r}", f"RAG ({r})") for r in summary.retrievers]
    fig, ax = plt.subplots(figsize=(1.4 * len(buckets) + 2.5, 4.2))
    width = 0.8 / len(systems)
    for i, (system, label) in enumerate(systems):
        means, lo, hi = _series(summary, buckets, system, summary.metric)
        colour = _draw(ax, _positions(buckets), buckets, means, lo, hi, label, offset=(i - (len(systems) - 1) / 2) * width)
        fit = (curves or {}).get(system)
        if fit:
            xs = [x for x, b in zip(_positions(buckets), buckets) if b != UNLINKED]
            s = 1.0 if summary.metric == "logprob" else 100.0
            ax.plot(xs, [s * v for v in fit[: len(xs)]], linestyle="--", linewidth=1, color=colour, alpha=0.8)
    _separator(ax, buckets)
    ax.set_xticks(_positions(buckets))
    ax.set_xticklabels(_xlabels(summary, buckets, "closed", summary.metric), fontsize=8)
    ax.set_xlabel("relevant-document count (question entity and answer entity in one document)")
    if summary.metric == "logprob":
        ax.set_ylabel("mean gold log-probability (nats)")
    else:
        ax.set_ylabel(f"accuracy ({summary.metric}, %)")
        ax.set_ylim(bottom=0)
    ax.set_title(f"{summary.header.get('name', '')}: {summary.header.get('reader', '')}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_recall(summary: Summary, path: str | Path) -> Path:
    plt = pyplot()
    buckets = _buckets(summary)
    n = len(summary.retrievers)
    fig, axes = plt.subplots(1, n, figsize=((1.2 * len(buckets) + 2) * n, 4.0), squeeze=False, sharey=True)
    for ax, r in zip(axes[0], summary.retrievers):
        for k in summary.recall_ks:
            means, lo, hi = _series(summary, buckets, f"retriever:{r}", f"recall@{k}")
            j = summary.recall_ks.index(k)
            _draw(ax, _positions(buckets), buckets, means, lo, hi, f"recall@{k}",
                  offset=(j - (len(summary.recall_ks) - 1) / 2) * 0.08)
        _separator(ax, buckets)
        ax.set_xticks(_positions(buckets))
        ax.set_xticklabels(_xlabels(summary, buckets, f"retriever:{r}", f"recall@{summary.recall_ks[0]}"), fontsize=8)
        ax.set_title(f"retriever {r}", fontsize=9)
        ax.set_xlabel("relevant-document count")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("answer in top-k passages (%)")
    axes[0][-1].legend(fontsize=8)
    return save_figure(fig, path)


# outcome -> colour: greens where the answer is right with passages, then the failures from mild to bleak
ATTRIBUTION_COLORS = {"right-both": "#1b7837", "fixed": "#7fbf7b", "misled": "#f1a340", "reader-missed": "#d6604d",
                      "retrieval-missed": "#8073ac", "no-evidence": "#bababa"}


def plot_attribution(rows: Sequence["AttributionRow"], path: str | Path, title: str = "") -> Path:
    """Stacked bars: per bucket (and `all`, population-weighted) the share of each outcome, one panel per retriever."""
    from rag.evaluation.attribution import LABELS, OUTCOMES

    plt = pyplot()
    retrievers = list(dict.fromkeys(r.retriever for r in rows))
    buckets = [b for b in dict.fromkeys(r.bucket for r in rows) if b != LINKED]
    idx = {(r.bucket, r.retriever, r.outcome): r for r in rows}
    xs = [i + (0.5 if b == ALL else 0.0) for i, b in enumerate(buckets)]  # "all" set apart
    fig, axes = plt.subplots(1, len(retrievers), figsize=((0.9 * len(buckets) + 1.5) * len(retrievers) + 2.2, 4.2),
                             squeeze=False, sharey=True)
    for ax, ret in zip(axes[0], retrievers):
        bottom = [0.0] * len(buckets)
        for o in OUTCOMES:
            h = []
            for b in buckets:
                r = idx.get((b, ret, o))
                h.append(0.0 if r is None or r.n == 0 else 100 * r.rate.mean)
            ax.bar(xs, h, bottom=bottom, width=0.7, color=ATTRIBUTION_COLORS[o], label=LABELS[o], edgecolor="white",
                   linewidth=0.5)
            bottom = [a + b for a, b in zip(bottom, h)]
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{b}\nn={idx[(b, ret, OUTCOMES[0])].n}" for b in buckets], fontsize=8)
        ax.set_title(f"retriever {ret}", fontsize=9)
        ax.set_xlabel("relevant-document count")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("questions (%)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].legend(handles[::-1], labels[::-1], fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_figure(fig, path, title)


def save_figure(fig, path: str | Path, title: str = "") -> Path:
    """Title (if any), tight layout, 120 dpi PNG at `path`; the figure is closed."""
    plt = pyplot()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
