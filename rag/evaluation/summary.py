"""The summary of a run (rows per bucket x system x measure), as rag.evaluation.report computes it and both the
report's tables and rag.evaluation.plots draw it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from rag.evaluation.stats import Rate

if TYPE_CHECKING:  # pragma: no cover
    from rag.buckets import Buckets
    from rag.evaluation.run_folder import Run

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


@dataclass(frozen=True)
class Bucketing:
    """Which bucket each evaluated question falls in, for the report's edges and for the sampling strata.

    The per-bucket rows use `label_of` (the report's edges, maybe chosen after the run); the pooled rows
    `linked` and `all` weight the sampling strata (`stratum_of`) by their populations.
    """

    buckets: "Buckets"  # the report's edges
    strata: "Buckets"  # the sampling edges (selection.json)
    evaluated: list[str]  # selected qids with at least one record, in selection order
    count_of: dict[str, int | None]  # qid -> count (None: unlinked)
    label_of: dict[str, str]  # qid -> bucket label
    stratum_of: dict[str, str]  # qid -> sampling bucket label
    population: dict[str, int]  # bucket label -> QA-set questions in it
    strata_population: dict[str, int]  # sampling bucket label -> QA-set questions in it

    @classmethod
    def of(cls, run: "Run", edges: Sequence[int] | None = None) -> "Bucketing":
        from collections import defaultdict

        from rag.buckets import Buckets

        buckets = Buckets(tuple(edges) if edges is not None else tuple(run.config.buckets))
        strata = Buckets(run.selection.buckets)
        # count per question from whichever record has it (every record of a question carries the same count)
        count_of: dict[str, int | None] = {}
        for recs in run.by_mode(run.modes).values():
            for qid, rec in recs.items():
                count_of.setdefault(qid, rec.count)
        evaluated = [q for q in run.selection.qids if q in count_of]
        counts = [count_of[q] for q in evaluated]
        return cls(buckets, strata, evaluated, count_of, dict(zip(evaluated, buckets.assign(counts))),
                   dict(zip(evaluated, strata.assign(counts))), defaultdict(int, run.selection.populations(buckets)),
                   defaultdict(int, run.selection.populations(strata)))

    @property
    def labels(self) -> list[str]:
        """The report's bucket labels, then "unlinked"."""
        return self.buckets.all_labels
