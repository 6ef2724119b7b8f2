"""Differences between two runs, per count bucket: B - A for accuracy of every system and for retriever recall.

Where the runs share questions (the usual case: same QA set, seed and sample, another reader or k), the
difference is paired over the shared questions; otherwise it is the difference of two independent samples.
Buckets use run A's edges for both runs (each record carries its own count). The `linked` and `all` rows weight
each of run A's sampling buckets by its population, as the summary does, so a stratified sample's rows estimate
the whole QA set (for a run over every question the weights equal the sizes and this is the plain mean).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.buckets import UNLINKED, Buckets
from rag.evaluation.stats import (Rate, bootstrap_diff, bootstrap_diff_independent, bootstrap_mean,
                                  stratified_bootstrap_diff_independent, stratified_bootstrap_mean)

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.run_folder import Run


@dataclass(frozen=True)
class CompareRow:
    bucket: str
    system: str
    measure: str
    a: Rate
    b: Rate
    diff: Rate  # B - A
    paired: int  # questions in both runs (0: independent samples)


def _outcomes(run: "Run", system: str, measure: str) -> dict[str, float]:
    """qid -> outcome of `system` ("closed", "rag:<r>", "retriever:<r>") on `measure` (em, f1, contains, recall@k)."""
    mode = "rag:" + system.split(":", 1)[1] if system.startswith("retriever:") else system
    out = {}
    for qid, rec in run.by_mode([mode])[mode].items():
        if measure.startswith("recall@"):
            k = int(measure.split("@", 1)[1])
            if (rec.depth or 0) < k:
                continue  # not retrieved that deep
            out[qid] = float(rec.hit_at(k))
        else:
            v = rec.score(measure)
            if v == v:  # NaN: a log-probability the run did not record
                out[qid] = v
    return out


def _systems(manifest: dict) -> list[str]:
    modes = manifest.get("modes", {})
    rags = sorted(m for m in modes if m.startswith("rag:"))
    return ["closed", *rags]


def compare_runs(run_a: str | Path, run_b: str | Path, measures: list[str] | None = None) -> list[CompareRow]:
    from rag.evaluation.run_folder import load_run

    ra, rb = load_run(run_a), load_run(run_b)
    ca, cb = ra.config, rb.config
    buckets = Buckets(tuple(ca.buckets))
    metric = ca.metric
    measures = measures or [metric]
    shared_ks = [k for k in ca.recall_ks if k in cb.recall_ks]
    systems = [s for s in _systems(ra.manifest) if s in _systems(rb.manifest)]
    plan = [(s, m) for s in systems for m in measures]
    plan += [(f"retriever:{s.split(':', 1)[1]}", f"recall@{k}") for s in systems if s.startswith("rag:") for k in shared_ks]

    counts = {}
    for run in (ra, rb):
        for rec in run:
            counts.setdefault(rec.qid, rec.count)
    qids_all = list(counts)
    label = dict(zip(qids_all, buckets.assign([counts[q] for q in qids_all])))
    strata = Buckets(ra.selection.buckets)
    stratum = dict(zip(qids_all, strata.assign([counts[q] for q in qids_all])))
    weight = ra.selection.populations(strata)
    n_boot, seed = ca.n_boot, ca.seed

    def rate(values: dict[str, float], keep) -> Rate:
        groups = [[v for q, v in values.items() if stratum[q] == s] for s in strata.all_labels if keep(s)]
        return stratified_bootstrap_mean(groups, [weight.get(s, 0) for s in strata.all_labels if keep(s)],
                                         n_boot=n_boot, seed=seed)

    rows = []
    for system, measure in plan:
        xa = _outcomes(ra, system, measure)
        xb = _outcomes(rb, system, measure)
        for b in buckets.all_labels:
            va = {q: v for q, v in xa.items() if label[q] == b}
            vb = {q: v for q, v in xb.items() if label[q] == b}
            common = [q for q in va if q in vb]
            if common:
                diff = bootstrap_diff([vb[q] for q in common], [va[q] for q in common], n_boot=n_boot, seed=seed)
            else:
                diff = bootstrap_diff_independent(list(vb.values()), list(va.values()), n_boot=n_boot, seed=seed)
            rows.append(CompareRow(b, system, measure, bootstrap_mean(list(va.values()), n_boot=n_boot, seed=seed),
                                   bootstrap_mean(list(vb.values()), n_boot=n_boot, seed=seed), diff, len(common)))
        for name, keep in (("linked", lambda s: s != UNLINKED), ("all", lambda s: True)):
            va = {q: v for q, v in xa.items() if keep(stratum[q])}
            vb = {q: v for q, v in xb.items() if keep(stratum[q])}
            common = [q for q in va if q in vb]
            if common:
                diff = rate({q: vb[q] - va[q] for q in common}, keep)
            else:
                labels = [s for s in strata.all_labels if keep(s)]
                diff = stratified_bootstrap_diff_independent(
                    [[v for q, v in vb.items() if stratum[q] == s] for s in labels],
                    [[v for q, v in va.items() if stratum[q] == s] for s in labels],
                    [weight.get(s, 0) for s in labels], n_boot=n_boot, seed=seed)
            rows.append(CompareRow(name, system, measure, rate(va, keep), rate(vb, keep), diff, len(common)))
    return rows


def _pct(r: Rate, signed: bool = False, measure: str = "em") -> str:
    """Rates in %, log-probabilities in nats."""
    if r.n == 0:
        return "n/a"
    s = 1.0 if measure.startswith("logprob") else 100.0
    f = ("{:+.%df}" if signed else "{:.%df}") % (2 if s == 1.0 else 1)
    return f"{f.format(r.mean * s)} [{f.format(r.lo * s)}, {f.format(r.hi * s)}]"


def to_markdown(rows: list[CompareRow], name_a: str, name_b: str) -> str:
    out = [f"# {name_b} vs {name_a}", "", "Cells: % [95% CI] (logprob: mean gold log-probability in nats); B - A is paired over the questions both runs evaluated "
           "(`paired` = how many), else independent. `linked` and `all` weight each of run A's sampling buckets by "
           "its population, as the summary does.", "",
           "| system | measure | bucket | A: n | A | B: n | B | B - A | paired |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.system} | {r.measure} | {r.bucket} | {r.a.n} | {_pct(r.a, measure=r.measure)} | {r.b.n} | "
                   f"{_pct(r.b, measure=r.measure)} | {_pct(r.diff, signed=True, measure=r.measure)} | {r.paired} |")
    return "\n".join(out) + "\n"


def to_csv(rows: list[CompareRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["bucket", "system", "measure", "n_a", "mean_a", "n_b", "mean_b", "diff", "diff_lo", "diff_hi", "paired"])
    for r in rows:
        w.writerow([r.bucket, r.system, r.measure, r.a.n, r.a.mean, r.b.n, r.b.mean, r.diff.mean, r.diff.lo, r.diff.hi, r.paired])
    return buf.getvalue()
