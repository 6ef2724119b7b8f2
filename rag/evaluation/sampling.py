"""Seeded stratified sampling: at most N questions per bucket, so a run fits a CPU budget."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class SampleInfo:
    bucket: str
    population: int
    sampled: int

    @property
    def fraction(self) -> float:
        return self.sampled / self.population if self.population else 0.0


def _key(seed: int, qid: str) -> str:
    # Order by a seeded hash of the id: the sample of a bucket does not depend on the other buckets or on
    # input order, and a larger N is a superset of a smaller one (runs can be extended).
    return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()


def stratified_sample(qids: Sequence[str], buckets: Sequence[str], per_bucket: int | dict[str, int] | None, seed: int = 0):
    """Returns (selected qids in input order, {bucket: SampleInfo}). per_bucket=None keeps everything; a dict gives
    each bucket its own size (a budget plan; a bucket not in it gets none)."""
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for q, b in zip(qids, buckets):
        by_bucket[b].append(q)
    chosen: set[str] = set()
    info = {}
    for b, members in by_bucket.items():
        n = per_bucket.get(b, 0) if isinstance(per_bucket, dict) else per_bucket
        take = members if n is None else sorted(members, key=lambda q: _key(seed, q))[:n]
        chosen.update(take)
        info[b] = SampleInfo(b, len(members), len(take))
    return [q for q in qids if q in chosen], info
