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


def stratified_sample(qids: Sequence[str], buckets: Sequence[str], per_bucket: int | None, seed: int = 0):
    """Returns (selected qids in input order, {bucket: SampleInfo}). per_bucket=None keeps everything."""
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for q, b in zip(qids, buckets):
        by_bucket[b].append(q)
    chosen: set[str] = set()
    info = {}
    for b, members in by_bucket.items():
        take = members if per_bucket is None else sorted(members, key=lambda q: _key(seed, q))[:per_bucket]
        chosen.update(take)
        info[b] = SampleInfo(b, len(members), len(take))
    return [q for q in qids if q in chosen], info
