"""Adaptive retrieval (Mallen et al. 2023, "When Not to Trust Language Models", PopQA): retrieve only for
questions whose relevant-document count is below a threshold, answer the rest closed-book.

The threshold is learned on a seeded split of the evaluated questions and reported on the rest, against
always retrieving and never retrieving, with the share of questions that retrieved.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from rag.errors import BadInputError
from rag.evaluation.stats import Rate, bootstrap_diff, bootstrap_mean


@dataclass(frozen=True)
class Policy:
    threshold: float  # retrieve when count < threshold; 0 = never (for linked questions), inf = always
    unlinked_retrieve: bool  # what to do when the count is unknown

    def retrieve(self, counts: Sequence[int | None]) -> np.ndarray:
        return np.array([self.unlinked_retrieve if c is None else c < self.threshold for c in counts], dtype=bool)

    def describe(self) -> str:
        t = "always" if math.isinf(self.threshold) else ("never" if self.threshold <= 0 else f"count < {self.threshold:g}")
        return f"retrieve when {t}; unlinked: {'retrieve' if self.unlinked_retrieve else 'closed-book'}"


@dataclass(frozen=True)
class AdaptiveResult:
    retriever: str
    policy: Policy
    n_train: int
    n_test: int
    train_accuracy: float
    adaptive: Rate  # held-out accuracy of the policy
    always: Rate  # held-out accuracy, always retrieving
    never: Rate  # held-out accuracy, closed-book only
    vs_always: Rate  # paired adaptive - always
    vs_never: Rate  # paired adaptive - never
    fraction_retrieved: float  # on the held-out questions

    def as_dict(self) -> dict:
        d = asdict(self)
        d["policy"]["threshold"] = None if math.isinf(self.policy.threshold) else self.policy.threshold
        d["policy"]["description"] = self.policy.describe()
        return d


def split(qids: Sequence[str], train_fraction: float, seed: int) -> np.ndarray:
    """Boolean train mask: a seeded hash order of the ids, so the split does not depend on input order."""
    if not 0 < train_fraction < 1:
        raise BadInputError(f"train_fraction must be in (0, 1), got {train_fraction}")
    keys = [hashlib.sha256(f"{seed}:adaptive:{q}".encode()).hexdigest() for q in qids]
    order = np.argsort(np.array(keys))
    n_train = int(round(train_fraction * len(qids)))
    mask = np.zeros(len(qids), dtype=bool)
    mask[order[:n_train]] = True
    return mask


def learn_policy(counts: Sequence[int | None], closed: Sequence[float], rag: Sequence[float], unlinked: str = "learn") -> tuple[Policy, float]:
    """The threshold with the best accuracy on these questions (ties: the one retrieving least); returns (policy, accuracy).

    Candidate thresholds are 0 (never), each distinct count (retrieve strictly below it) and infinity (always).
    """
    closed = np.asarray(closed, dtype=float)
    rag = np.asarray(rag, dtype=float)
    linked = np.array([c is not None for c in counts], dtype=bool)
    cnt = np.array([c if c is not None else -1 for c in counts], dtype=float)

    # linked: accuracy(t) = sum(rag[count < t]) + sum(closed[count >= t]), over sorted candidates
    lc, lr, lx = cnt[linked], rag[linked], closed[linked]
    candidates = np.unique(np.concatenate([[0.0], lc, [np.inf]]))
    order = np.argsort(lc, kind="stable")
    sc = lc[order]
    cum_rag = np.concatenate([[0.0], np.cumsum(lr[order])])
    cum_closed = np.concatenate([[0.0], np.cumsum(lx[order])])
    below = np.searchsorted(sc, candidates, side="left")  # how many counts < t
    acc = cum_rag[below] + (cum_closed[-1] - cum_closed[below])
    best = int(np.flatnonzero(acc == acc.max())[0])  # candidates ascend: first best retrieves least
    threshold = float(candidates[best])

    u_rag, u_closed = rag[~linked].sum(), closed[~linked].sum()
    if unlinked == "learn":
        unlinked_retrieve = bool(u_rag > u_closed)
    elif unlinked in ("retrieve", "closed"):
        unlinked_retrieve = unlinked == "retrieve"
    else:
        raise BadInputError(f"unlinked must be learn, retrieve or closed, got {unlinked!r}")
    total = acc[best] + (u_rag if unlinked_retrieve else u_closed)
    return Policy(threshold, unlinked_retrieve), float(total / max(len(closed), 1))


def adaptive_retrieval(
    qids: Sequence[str],
    counts: Sequence[int | None],
    closed: Sequence[float],
    rag: Sequence[float],
    retriever: str,
    train_fraction: float = 0.5,
    seed: int = 0,
    unlinked: str = "learn",
    n_boot: int = 2000,
) -> AdaptiveResult:
    """Learn the policy on the seeded train share of the questions and score it on the rest."""
    n = len(qids)
    if not (len(counts) == len(closed) == len(rag) == n):
        raise BadInputError("qids, counts, closed and rag must have the same length")
    if n < 2:
        raise BadInputError(f"adaptive retrieval needs at least 2 questions, got {n}")
    closed = np.asarray(closed, dtype=float)
    rag = np.asarray(rag, dtype=float)
    train = split(qids, train_fraction, seed)
    test = ~train
    counts = list(counts)
    policy, train_acc = learn_policy([c for c, t in zip(counts, train) if t], closed[train], rag[train], unlinked)
    test_counts = [c for c, t in zip(counts, test) if t]
    retrieve = policy.retrieve(test_counts)
    chosen = np.where(retrieve, rag[test], closed[test])
    return AdaptiveResult(
        retriever=retriever,
        policy=policy,
        n_train=int(train.sum()),
        n_test=int(test.sum()),
        train_accuracy=train_acc,
        adaptive=bootstrap_mean(chosen, n_boot=n_boot, seed=seed),
        always=bootstrap_mean(rag[test], n_boot=n_boot, seed=seed),
        never=bootstrap_mean(closed[test], n_boot=n_boot, seed=seed),
        vs_always=bootstrap_diff(chosen, rag[test], n_boot=n_boot, seed=seed),
        vs_never=bootstrap_diff(chosen, closed[test], n_boot=n_boot, seed=seed),
        fraction_retrieved=float(retrieve.mean()) if retrieve.size else float("nan"),
    )
