"""The summary of a run (rows per bucket x system x measure), as rag.evaluation.report computes it and both the
report's tables and rag.evaluation.plots draw it."""
from __future__ import annotations

from dataclasses import dataclass, field

from rag.evaluation.stats import Rate

LINKED, ALL = "linked", "all"  # the pooled rows after the buckets: every linked bucket, every question


@dataclass(frozen=True)
class Row:
    bucket: str
    population: int
    n: int
    system: str
    measure: str
    rate: Rate


@dataclass
class Summary:
    rows: list[Row]
    buckets: list[str]  # in display order, then "linked", "all"
    retrievers: list[str]
    recall_ks: list[int]
    metric: str
    sample: dict[str, dict]  # bucket -> population, n
    adaptive: dict | None
    header: dict  # name, reader, qa, counts, ... for the Markdown
    complete: tuple[int, int]  # (records present, records expected)
    # the accuracy rows again, split by how each question's count was obtained (entity / surface / ...):
    # Row.system is "<system>|<method>"; empty when every question was counted one way
    by_method: list[Row] = field(default_factory=list)

    def get(self, bucket: str, system: str, measure: str) -> Row | None:
        return self._index.get((bucket, system, measure))

    def __post_init__(self):
        self._index = {(r.bucket, r.system, r.measure): r for r in self.rows}
