"""Log-scale buckets of relevant-document counts, plus an explicit bucket for unlinked questions.

Below both the counting (rag.entities.counting summarizes its counts per bucket) and the evaluation (runs are
sampled and reported per bucket).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rag.errors import BadInputError

UNLINKED = "unlinked"
DEFAULT_EDGES = (0, 1, 10, 100, 1000)  # lower edges: [0,1) [1,10) [10,100) [100,1000) [1000,inf)


def log10_edges(max_count: int) -> tuple[int, ...]:
    """0, 1, 10, 100, ... up to the bucket holding max_count."""
    k = 0 if max_count < 1 else int(math.floor(math.log10(max_count)))
    return (0, *(10**i for i in range(k + 1)))


@dataclass(frozen=True)
class Buckets:
    """Half-open intervals [edges[i], edges[i+1]); the last one is open-ended."""

    edges: tuple[int, ...] = DEFAULT_EDGES

    def __post_init__(self):
        e = self.edges
        if len(e) < 1 or any(not isinstance(x, (int, np.integer)) or x < 0 for x in e):
            raise BadInputError(f"bucket edges must be non-negative integers, got {e!r}")
        if any(b <= a for a, b in zip(e, e[1:])):
            raise BadInputError(f"bucket edges must be strictly increasing, got {e!r}")

    @property
    def labels(self) -> list[str]:
        out = []
        for lo, hi in zip(self.edges, (*self.edges[1:], None)):
            if hi is None:
                out.append(f">={lo}")
            elif hi == lo + 1:
                out.append(str(lo))
            else:
                out.append(f"{lo}-{hi - 1}")
        return out

    @property
    def all_labels(self) -> list[str]:
        return [*self.labels, UNLINKED]

    def assign(self, counts: Sequence[float | None]) -> list[str]:
        """Bucket label per count; None or NaN (question or answer not linked) -> "unlinked"."""
        labels = self.labels
        arr = np.array([np.nan if c is None else c for c in counts], dtype=float)
        idx = np.searchsorted(np.asarray(self.edges, dtype=float), arr, side="right") - 1
        out = []
        for c, i in zip(arr, idx):
            if np.isnan(c):
                out.append(UNLINKED)
            elif i < 0:
                raise BadInputError(f"count {c} is below the first bucket edge {self.edges[0]}")
            else:
                out.append(labels[i])
        return out
