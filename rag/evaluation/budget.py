"""Budgeted sampling: how many questions per count bucket a time budget buys, and where they help most.

    cost        seconds per question (every mode), measured on a pilot of the run's own first questions
    plan(populations, centres, cost, budget_s, allocation) -> {bucket: n}     sum(n) * cost <= budget_s

Allocations:
    equal   the same n in every bucket (capped by its population; what is left goes to the others)
    slope   n_h proportional to N_h * |x_h - x_bar| (x = log10(count + 1) at the bucket's centre, x_bar the population
            mean over linked questions): a Neyman allocation for the population-weighted slope of accuracy on x,
            whose variance is a sum of w_i^2 (x_i - x_bar)^2 var(y_i) terms; every bucket keeps at least
            MIN_PER_BUCKET questions (the unlinked bucket, which has no x, gets just that) so each still has a rate
Samples stay nested: a bucket's questions are taken in a seeded order (rag.evaluation.sampling), so a larger budget
draws a superset and a later run extends an earlier one instead of restarting it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rag.errors import BadInputError

MIN_PER_BUCKET = 5
ALLOCATIONS = ("slope", "equal")
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | int | float) -> float:
    """Seconds from "90m", "1.5h", "600s" or a plain number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
        if not m:
            raise BadInputError(f"budget {text!r}: expected a duration such as 90m, 1.5h or 600s")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not seconds > 0:
        raise BadInputError(f"budget must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Plan:
    """Per-bucket sample sizes for a budget, and the numbers behind them."""

    per_bucket: dict[str, int]
    cost_per_question: float  # seconds, every mode
    budget_s: float
    allocation: str

    @property
    def n_questions(self) -> int:
        return sum(self.per_bucket.values())

    @property
    def expected_seconds(self) -> float:
        return self.n_questions * self.cost_per_question

    def as_dict(self) -> dict:
        return {"per_bucket": dict(self.per_bucket), "cost_per_question_s": round(self.cost_per_question, 4),
                "budget_s": self.budget_s, "allocation": self.allocation, "n_questions": self.n_questions,
                "expected_s": round(self.expected_seconds, 1)}

    def describe(self) -> str:
        sizes = ", ".join(f"{b}: {n}" for b, n in self.per_bucket.items())
        return (f"budget {self.budget_s / 60:.1f} min at {self.cost_per_question:.2f} s per question buys "
                f"{self.n_questions} questions ({self.allocation} allocation): {sizes}")


def plan(populations: dict[str, int], centres: dict[str, float | None], cost: float, budget_s: float,
         allocation: str = "slope", done: dict[str, int] | None = None) -> Plan:
    """Sizes per bucket such that the questions not yet `done` fit `budget_s` at `cost` seconds each.

    `centres`: bucket -> x at its centre (None for the unlinked bucket); `done`: bucket -> questions already
    answered in every mode (they cost nothing and are always kept)."""
    if allocation not in ALLOCATIONS:
        raise BadInputError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if not cost > 0:
        raise BadInputError(f"the cost per question must be positive, got {cost}")
    done = {b: min(done.get(b, 0), n) for b, n in populations.items()} if done else {b: 0 for b in populations}
    afford = int(budget_s // cost) + sum(done.values())  # questions in all, counting those already done
    buckets = [b for b, n in populations.items() if n > 0]
    if allocation == "equal":
        scores = {b: 1.0 for b in buckets}
    else:
        linked = [b for b in buckets if centres.get(b) is not None]
        total = sum(populations[b] for b in linked)
        xbar = sum(populations[b] * centres[b] for b in linked) / total if total else 0.0
        scores = {b: (populations[b] * abs(centres[b] - xbar) if b in linked else 0.0) for b in buckets}
        if not any(scores.values()):
            scores = {b: 1.0 for b in buckets}
    # floors first (what is done, then the minimum per bucket), then the rest by score, capped by populations
    sizes = {b: done[b] for b in buckets}
    left = afford - sum(sizes.values())
    for b in sorted(buckets, key=lambda b: -populations[b]):
        add = max(0, min(MIN_PER_BUCKET, populations[b]) - sizes[b])
        add = min(add, max(left, 0))
        sizes[b] += add
        left -= add
    while left > 0:
        open_ = [b for b in buckets if sizes[b] < populations[b] and scores[b] > 0]
        if not open_:
            open_ = [b for b in buckets if sizes[b] < populations[b]]
            if not open_:
                break
            scores = {b: 1.0 for b in buckets}
        weight = sum(scores[b] for b in open_)
        # largest-remainder shares of what is left, at least one question to the best-scored bucket per round
        shares = {b: left * scores[b] / weight for b in open_}
        given = 0
        for b in open_:
            add = min(int(math.floor(shares[b])), populations[b] - sizes[b])
            sizes[b] += add
            given += add
        if given == 0:
            b = max(open_, key=lambda b: (shares[b] - math.floor(shares[b]), scores[b]))
            sizes[b] += 1
            given = 1
        left -= given
    return Plan({b: sizes[b] for b in populations if b in sizes}, cost, budget_s, allocation)
