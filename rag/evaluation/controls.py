"""Controls for what a count measures (issue 20, 5): is a closed-book slope knowledge of the subject, or answer prior?

Counts rise with how guessable an answer is, not only with how well the subject is known: generic answers
(countries, "politician") co-occur with everything and are easy to guess from surface cues. So beside closed-book,
computed from a run's records and its questions' metadata only (old runs report too; `rag eval report` rewrites it):

  composition   each count bucket's questions by group: the QA set's relation (EntityQuestions' meta "relation",
                or the relation of a template in controls.templates), else the answer type (rag.evaluation.answer_types);
                answer types are shown too
  majority      the majority-answer baseline: each question answered with the most frequent gold answer of its group
                in the evaluated sample, leave-one-out (the question's own golds do not vote; each question votes
                once per distinct normalised gold); scored like the reader (the run's measure), per bucket and
                group, beside closed-book; not for regex golds
  slopes        closed-book's logistic slope on log10(count + 1) (rag.evaluation.trends), and beside it: the majority
                baseline's slope, the slope within each group of at least controls.min_group linked questions, their
                pooled mean (weighted by n), the slope without questions whose gold answer is a country, and, with
                controls.exclude_countries_counts, the slope on counts built with `rag counts build --exclude-countries`
                (Kandpal et al.'s control: countries dropped from the question's entities)
  blind         the subject-blind mode (rag.evaluation.blind): per bucket its accuracy beside closed-book on the same
                questions, and its slope against closed-book's; "not run" when the run had no such mode

Every slope is fitted on the run's linked closed-book questions (or a subset of them) with the same design weights
(population_s / sampled_s of the sampling stratum, for the whole sample, so a subset keeps its questions' weights)
and the same stratified bootstrap draws, so a difference between two slopes is paired. A slope that survives the
controls (within groups, without countries, blind slope flat) is knowledge; one that does not is answer prior.

controls.json holds everything (rates as {n, mean, lo, hi}, slopes as trends.Slope.as_dict, NaN written as null).
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rag.evaluation.blind import BLIND, read_blind
from rag.evaluation.stats import Rate, bootstrap_diff, bootstrap_mean, stratified_bootstrap_mean
from rag.evaluation.trends import FITS, NA, Slope, design_weights, log_count, resample_counts

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.run_folder import Run

FORMAT = 1
RELATION, ANSWER_TYPE = "relation", "answer type"
NO_GROUP = "(none)"
_EQ_QID = re.compile(r"^entityquestions-(P\d+)-\d+$")


# --- groups ----------------------------------------------------------------------------------------------------


def relations_of(run: "Run", questions: dict[str, str]) -> dict[str, str]:
    """qid -> relation, for the QA sets that have them: controls.templates (matched against the question text),
    else the QA file's meta "relation" (EntityQuestions), else an EntityQuestions qid; {} for sets without."""
    cfg = run.config
    if cfg.controls.templates is not None:
        from rag.entities.templates import load_templates, match

        templates = load_templates(cfg.controls.templates)
        return {q: (m[0] if (m := match(text, q, templates)) else NO_GROUP) for q, text in questions.items()}
    out: dict[str, str] = {}
    path = Path(cfg.qa.path)
    if path.exists():
        from rag.errors import BadInputError
        from rag.qa import load_questions

        try:
            meta = {q.qid: q.meta.get("relation") for q in load_questions(path, cfg.qa.format, limit=cfg.qa.limit,
                                                                          match_type=cfg.qa.match_type)}
            out = {q: meta[q] for q in questions if meta.get(q)}
        except BadInputError:  # the QA file changed since the run: fall back to the qids
            out = {}
    if not out:  # the QA file is gone: EntityQuestions qids name their relation
        out = {q: m.group(1) for q in questions if (m := _EQ_QID.match(q))}
    if not out:
        return {}
    return {q: out.get(q, NO_GROUP) for q in questions}


def majority_answers(groups: dict[str, str], answers: dict[str, Sequence[str]]) -> dict[str, str | None]:
    """qid -> the most frequent gold answer of its group among the *other* questions (leave-one-out), None when no
    other question of the group has a gold. Each question votes once per distinct normalised gold; ties go to the
    alphabetically first normalised answer; the answer is given in its first-seen spelling."""
    from rag.metrics import normalize_answer

    keys = {q: {normalize_answer(a) for a in answers[q] if normalize_answer(a)} for q in groups}
    members: dict[str, list[str]] = defaultdict(list)
    for q, g in groups.items():
        members[g].append(q)
    out: dict[str, str | None] = {}
    for g, qs in members.items():
        votes: Counter = Counter()
        spelling: dict[str, str] = {}
        for q in qs:
            votes.update(keys[q])
            for a in answers[q]:
                spelling.setdefault(normalize_answer(a), a.strip())
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))  # (answer, votes), best first
        for q in qs:
            best, best_n = None, 0
            for key, n in ranked:
                if n <= best_n:  # later entries cannot beat the best even before subtracting the own vote
                    break
                n_loo = n - (key in keys[q])
                if n_loo > best_n:
                    best, best_n = key, n_loo
            out[q] = spelling[best] if best is not None else None
    return out


def top_answers(groups: dict[str, str], answers: dict[str, Sequence[str]]) -> dict[str, dict]:
    """group -> its most frequent gold answer (every question voting), with votes and group size."""
    from rag.metrics import normalize_answer

    votes: dict[str, Counter] = defaultdict(Counter)
    size: Counter = Counter(groups.values())
    spelling: dict[str, str] = {}
    for q, g in groups.items():
        for key in {normalize_answer(a) for a in answers[q] if normalize_answer(a)}:
            votes[g][key] += 1
        for a in answers[q]:
            spelling.setdefault(normalize_answer(a), a.strip())
    out = {}
    for g in size:
        if votes[g]:
            key, n = sorted(votes[g].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            out[g] = {"answer": spelling[key], "votes": n, "n": size[g]}
    return out


# --- paired fits over subsets ------------------------------------------------------------------------------------


class PairedFits:
    """Logistic slopes of outcomes against x on subsets of one set of questions, all with the same design weights
    and bootstrap draws, so any two slopes' replicates are paired."""

    def __init__(self, strata: Sequence[str], populations: dict[str, int], n_boot: int, seed: int):
        wd = design_weights(strata, populations)
        self.wd = wd / wd.mean() if wd.size else wd
        self.reps = resample_counts(strata, n_boot, seed) * self.wd[None, :] if wd.size else np.zeros((n_boot, 0))
        self.n_boot = n_boot

    def fit(self, x, y, mask=None, alpha: float = 0.05) -> tuple[Slope, np.ndarray]:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        m = np.ones(x.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        m = m & np.isfinite(x) & np.isfinite(y)
        if m.sum() < 3 or np.ptp(x[m]) == 0:
            return NA, np.full(self.n_boot, np.nan)
        fit = FITS["logistic"]
        a0, b0 = fit(x[m], y[m], self.wd[None, m])
        with np.errstate(divide="ignore", invalid="ignore"):  # a replicate that drew none of a small subset
            _, bb = fit(x[m], y[m], self.reps[:, m])
        bb = np.where(self.reps[:, m].sum(axis=1) > 0, bb, np.nan)
        lo, hi = np.nanquantile(bb, [alpha / 2, 1 - alpha / 2])
        return Slope(int(m.sum()), float(b0[0]), float(lo), float(hi), float(a0[0])), bb


def diff(a: tuple[Slope, np.ndarray], b: tuple[Slope, np.ndarray], alpha: float = 0.05) -> Slope:
    """Slope a minus slope b from paired replicates (PairedFits.fit results)."""
    (sa, ba), (sb, bb) = a, b
    if sa.n == 0 or sb.n == 0:
        return NA
    d = ba - bb
    if not np.isfinite(d).any():
        return NA
    lo, hi = np.nanquantile(d, [alpha / 2, 1 - alpha / 2])
    return Slope(min(sa.n, sb.n), sa.slope - sb.slope, float(lo), float(hi))


def pooled(fits: Sequence[tuple[Slope, np.ndarray]], alpha: float = 0.05) -> tuple[Slope, np.ndarray]:
    """The n-weighted mean of several slopes, replicate by replicate (a replicate's NaN slopes left out), and its
    replicates (paired with the fits')."""
    fits = [(s, b) for s, b in fits if s.n > 0]
    if not fits:
        return NA, np.full(1, np.nan)
    w = np.array([s.n for s, _ in fits], dtype=float)
    point = float(np.sum(w * np.array([s.slope for s, _ in fits])) / w.sum())
    boots = np.vstack([b for _, b in fits])  # (groups, B)
    ok = np.isfinite(boots)
    with np.errstate(invalid="ignore", divide="ignore"):
        comb = np.nansum(np.where(ok, boots, 0) * w[:, None], axis=0) / (ok * w[:, None]).sum(axis=0)
    lo, hi = np.nanquantile(comb, [alpha / 2, 1 - alpha / 2])
    return Slope(int(w.sum()), point, float(lo), float(hi)), comb


# --- the analysis ------------------------------------------------------------------------------------------------


def _rate(r: Rate) -> dict:
    return {"n": r.n, "mean": r.mean, "lo": r.lo, "hi": r.hi}


def run_controls(run: "Run", edges: Sequence[int] | None = None, n_boot: int | None = None) -> dict:
    """Every control of a run (module docstring), from its records; the dict controls.json holds."""
    from rag.evaluation.answer_types import TYPES, answer_type
    from rag.evaluation.summary import Bucketing
    from rag.metrics import score_answer

    cfg = run.config
    measure = cfg.metric if cfg.metric in ("em", "contains") else "em"
    n_boot = n_boot or cfg.n_boot
    regex = run.manifest.get("identity", {}).get("qa", {}).get("match_type") == "regex"
    bk = Bucketing.of(run, edges)
    closed = run.by_mode()["closed"]
    qids = [q for q in run.selection.qids if q in closed]
    out: dict = {"format": FORMAT, "measure": measure, "n_questions": len(qids), "n_boot": n_boot,
                 "x": "log10(count + 1)", "min_group": cfg.controls.min_group}
    texts = {q: closed[q].question for q in qids}
    answers = {q: tuple(closed[q].answers) for q in qids}
    relations = relations_of(run, texts) if qids else {}
    types = {q: answer_type(answers[q]) for q in qids}
    grouping = RELATION if relations else ANSWER_TYPE
    group = relations if relations else types
    out["grouping"] = grouping
    labels = bk.labels

    # composition: bucket -> group -> questions
    def compose(of: dict[str, str]) -> dict:
        table = {b: Counter() for b in labels}
        for q in qids:
            table[bk.label_of[q]][of[q]] += 1
        return {b: {"n": sum(c.values()), "by_group": dict(sorted(c.items()))} for b, c in table.items()}

    out["composition"] = compose(group)
    out["answer_types"] = compose(types)
    out["answer_type_names"] = list(TYPES)

    # majority baseline vs closed-book
    score = {q: closed[q].score(measure) for q in qids}
    strata_n = Counter(bk.stratum_of[q] for q in qids)

    def weighted(sub: Sequence[str], values: dict[str, float]) -> Rate:
        """Population estimate over `sub`: each question weighted by its stratum's population / sample size."""
        groups = defaultdict(list)
        for q in sub:
            groups[bk.stratum_of[q]].append(values[q])
        strata = sorted(groups)
        return stratified_bootstrap_mean([groups[s] for s in strata],
                                         [bk.strata_population[s] * len(groups[s]) / strata_n[s] for s in strata],
                                         n_boot=n_boot, seed=cfg.seed)

    maj_score: dict[str, float] | None = None
    if regex:
        out["majority"] = {"error": "regex golds: the majority answer of a set of patterns is not defined"}
    elif qids:
        guess = majority_answers(group, answers)
        maj_score = {q: (getattr(score_answer(guess[q], answers[q]), measure) if guess[q] is not None else 0.0)
                     for q in qids}
        rows = {}
        for b in labels:
            sub = [q for q in qids if bk.label_of[q] == b]
            rows[b] = {"n": len(sub),
                       "closed": _rate(bootstrap_mean([score[q] for q in sub], n_boot=n_boot, seed=cfg.seed)),
                       "majority": _rate(bootstrap_mean([maj_score[q] for q in sub], n_boot=n_boot, seed=cfg.seed)),
                       "closed_minus_majority": _rate(bootstrap_diff([score[q] for q in sub], [maj_score[q] for q in sub],
                                                                     n_boot=n_boot, seed=cfg.seed)) if sub else None}
        per_group = {}
        tops = top_answers(group, answers)
        for g in sorted(set(group.values()), key=lambda g: (-sum(1 for q in qids if group[q] == g), g)):
            sub = [q for q in qids if group[q] == g]
            per_group[g] = {"n": len(sub), "top": tops.get(g), "closed": _rate(weighted(sub, score)),
                            "majority": _rate(weighted(sub, maj_score))}
        out["majority"] = {"buckets": rows, "groups": per_group, "all": {
            "n": len(qids), "closed": _rate(weighted(qids, score)), "majority": _rate(weighted(qids, maj_score))}}

    # slopes, all on the linked closed-book questions with shared design weights and draws
    linked = [q for q in qids if closed[q].count is not None]
    out["n_linked"] = len(linked)
    fits = PairedFits([bk.stratum_of[q] for q in linked], bk.strata_population, n_boot, cfg.seed)
    x = log_count([closed[q].count for q in linked])
    y = np.array([score[q] for q in linked])
    base = fits.fit(x, y)
    slopes: dict = {"closed": base[0].as_dict()}
    if maj_score is not None:
        maj = fits.fit(x, [maj_score[q] for q in linked])
        slopes["majority"] = maj[0].as_dict()
        slopes["closed_minus_majority"] = diff(base, maj).as_dict()
    within, within_fits = {}, []
    for g in sorted(set(group[q] for q in linked)):
        mask = np.array([group[q] == g for q in linked])
        if mask.sum() < cfg.controls.min_group:
            within[g] = {"n": int(mask.sum()), "skipped": f"fewer than {cfg.controls.min_group} linked questions"}
            continue
        f = fits.fit(x, y, mask)
        if f[0].n == 0:
            within[g] = {"n": int(mask.sum()), "skipped": "every question has the same count"}
            continue
        within[g] = f[0].as_dict()
        within_fits.append(f)
    slopes["within"] = within
    pool = pooled(within_fits)
    slopes["pooled_within"] = pool[0].as_dict()
    slopes["pooled_within_minus_closed"] = diff(pool, base).as_dict()
    out["slopes"] = slopes

    # countries: the slope without questions whose gold answer is a country, and with exclude-countries counts
    is_c = np.array([types[q] == "country" for q in linked], dtype=bool)
    no_c = fits.fit(x, y, ~is_c)
    out["countries"] = {"n_country_answers": int(is_c.sum()), "closed": base[0].as_dict(),
                        "closed_without_country_answers": no_c[0].as_dict(),
                        "difference": diff(no_c, base).as_dict(),
                        "exclude_countries_counts": _excluded_counts(run, linked, x, y, fits)}

    out["blind"] = _blind(run, bk, qids, linked, x, y, score, measure, fits, n_boot)
    return _plain(out)


def _excluded_counts(run: "Run", linked: list[str], x: np.ndarray, y: np.ndarray, fits: PairedFits) -> dict | None:
    """controls.exclude_countries_counts: closed-book's slope on those counts against the run's counts, on the
    questions linked in both (paired)."""
    path = run.config.controls.exclude_countries_counts
    if path is None:
        return None
    if not Path(path).exists():
        return {"path": str(path), "error": "the counts folder does not exist"}
    from rag.counts import CountsTable

    other = CountsTable.open(path)
    missing = [q for q in linked if q not in other.counts]
    if missing:
        return {"path": str(path), "error": f"{len(missing)} evaluated questions are not in these counts (e.g. {missing[0]!r}): "
                                            "they were built for another QA set"}
    both = np.array([other.counts[q] is not None for q in linked], dtype=bool)
    x2 = np.where(both, log_count([other.counts[q] or 0 for q in linked]), np.nan)
    a, b = fits.fit(x2, y, both), fits.fit(x, y, both)
    changed = int(np.sum(both & (np.nan_to_num(x2) != x)))
    return {"path": str(path), "n_linked_in_both": int(both.sum()), "n_count_changed": changed,
            "closed_run_counts": b[0].as_dict(), "closed_excluded_counts": a[0].as_dict(), "difference": diff(a, b).as_dict()}


def _blind(run: "Run", bk, qids, linked, x, y, score, measure, fits: PairedFits, n_boot: int) -> dict:
    info = read_blind(run.folder)
    blind = run.by_mode([BLIND])[BLIND]
    if info is None and not blind:
        return {"run": False}
    cfg = run.config
    out = {"run": True, "placeholder": (info or {}).get("placeholder"), "n_blinded": (info or {}).get("n_blinded"),
           "n_selected": (info or {}).get("n_selected"), "unmatched": (info or {}).get("unmatched", {}),
           "examples": (info or {}).get("examples", [])[:5], "n_answered": sum(1 for q in qids if q in blind)}
    rows = {}
    for b in bk.labels:
        sub = [q for q in qids if bk.label_of[q] == b and q in blind]
        c, z = [score[q] for q in sub], [blind[q].score(measure) for q in sub]
        rows[b] = {"n": len(sub), "closed": _rate(bootstrap_mean(c, n_boot=n_boot, seed=cfg.seed)),
                   "blind": _rate(bootstrap_mean(z, n_boot=n_boot, seed=cfg.seed)),
                   "blind_minus_closed": _rate(bootstrap_diff(z, c, n_boot=n_boot, seed=cfg.seed))}
    out["buckets"] = rows
    mask = np.array([q in blind for q in linked], dtype=bool)
    yb = np.array([blind[q].score(measure) if q in blind else np.nan for q in linked])
    c_fit, b_fit = fits.fit(x, y, mask), fits.fit(x, yb, mask)
    out["slopes"] = {"closed": c_fit[0].as_dict(), "blind": b_fit[0].as_dict(),
                     "blind_minus_closed": diff(b_fit, c_fit).as_dict()}
    return out


def _plain(obj):
    """NaN -> None, numpy scalars -> Python, recursively (controls.json is strict JSON)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# --- summary.md --------------------------------------------------------------------------------------------------


def _pct(r: dict | None, signed: bool = False) -> str:
    if not r or not r.get("n") or r.get("mean") is None:
        return "n/a"
    f = "{:+.1f}" if signed else "{:.1f}"
    lo, hi = r.get("lo"), r.get("hi")
    ci = f" [{f.format(lo * 100)}, {f.format(hi * 100)}]" if lo is not None and hi is not None else ""
    return f.format(r["mean"] * 100) + ci


def _slope(s: dict | None) -> str:
    if not s or not s.get("n") or s.get("slope") is None:
        return "n/a"
    lo, hi = s.get("lo"), s.get("hi")
    ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else ""
    return f"{s['slope']:+.3f}{ci}"


def _yes(s: dict | None) -> str:
    return "yes" if s and s.get("excludes_zero") else "no"


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in body), ""]


def controls_markdown(c: dict) -> str:
    """The "Controls: what the count measures" section of summary.md."""
    m = c["measure"].upper() if c["measure"] == "em" else c["measure"]
    out = ["## Controls: what the count measures", "",
           "Is closed-book's count slope knowledge of the subject, or an answer prior that rises with the count? "
           f"Accuracy = {m}; cells % [95% CI]; slopes in log-odds per tenfold count (x = log10(count + 1)), all on the "
           "same linked questions' design weights and bootstrap draws, so differences are paired (rag.evaluation.controls).",
           ""]
    if not c["n_questions"]:
        return "\n".join(out + ["No closed-book record yet: nothing to control.", ""])
    comp = c["composition"]
    buckets = [b for b, v in comp.items() if v["n"]]
    groups = sorted({g for b in buckets for g in comp[b]["by_group"]},
                    key=lambda g: (-sum(comp[b]["by_group"].get(g, 0) for b in buckets), g))

    def cell(v: dict, g: str) -> str:
        k = v["by_group"].get(g, 0)
        return f"{k} ({k / v['n']:.0%})" if k else "·"

    grp = c["grouping"]
    out += [f"### Composition of each bucket by {grp}", "",
            ("Relations from the QA set (EntityQuestions' relation files, or controls.templates)." if grp == RELATION else
             "The QA set has no relations: questions are grouped by answer type (rag.evaluation.answer_types: country, "
             "number/date, person-like = 2-4 capitalised words, other).") + " Cells: questions (share of the bucket).", ""]
    out += _table([grp, *buckets], [[g, *(cell(comp[b], g) for b in buckets)] for g in groups]
                  + [["n", *(str(comp[b]["n"]) for b in buckets)]])
    if grp == RELATION:
        at = c["answer_types"]
        out += ["By answer type:", ""]
        out += _table(["answer type", *buckets], [[t, *(cell(at[b], t) for b in buckets)] for t in c["answer_type_names"]
                                                  if any(at[b]["by_group"].get(t) for b in buckets)])

    maj = c.get("majority", {})
    out += ["### Majority-answer baseline", ""]
    if "error" in maj:
        out += [f"Not computed: {maj['error']}.", ""]
    else:
        out += [f"Each question answered with the most frequent gold answer of its {grp} in the evaluated sample, "
                "leave-one-out (its own golds do not vote). A bucket where closed-book is no better than this is "
                "answered from the prior, not the subject.", ""]
        out += _table(["bucket", "n", "closed-book", "majority", "closed - majority"],
                      [[b, str(r["n"]), _pct(r["closed"]), _pct(r["majority"]), _pct(r["closed_minus_majority"], True)]
                       for b, r in maj["buckets"].items() if r["n"]]
                      + [["all (population-weighted)", str(maj["all"]["n"]), _pct(maj["all"]["closed"]),
                          _pct(maj["all"]["majority"]), ""]])
        within = c["slopes"]["within"]
        body = []
        for g, r in maj["groups"].items():
            top = r.get("top")
            w = within.get(g, {})
            body.append([g, str(r["n"]), f"{top['answer']} ({top['votes']}/{top['n']})" if top else "n/a",
                         _pct(r["majority"]), _pct(r["closed"]), _slope(w) if "slope" in w else w.get("skipped", "unlinked")])
        out += [f"Per {grp} (rates population-weighted; slope of closed-book within the {grp}, from its linked questions, "
                f"when it has at least {c['min_group']}):", ""]
        out += _table([grp, "n", "most common answer (votes/n)", "majority", "closed-book", "closed-book slope [95% CI]"], body)

    s, ct = c["slopes"], c["countries"]
    out += ["### Slopes with and without the controls", ""]
    rows = [["closed-book, all linked questions", str(s["closed"]["n"]), _slope(s["closed"]), _yes(s["closed"])]]
    if "majority" in s:
        rows += [["majority baseline (answer prior)", str(s["majority"]["n"]), _slope(s["majority"]), _yes(s["majority"])],
                 ["closed-book - majority", "", _slope(s["closed_minus_majority"]), _yes(s["closed_minus_majority"])]]
    rows += [[f"closed-book within {grp}s, pooled (n-weighted mean)", str(s["pooled_within"]["n"] or 0),
              _slope(s["pooled_within"]), _yes(s["pooled_within"])],
             [f"pooled within {grp}s - closed-book", "", _slope(s["pooled_within_minus_closed"]),
              _yes(s["pooled_within_minus_closed"])],
             [f"closed-book without country answers ({ct['n_country_answers']} left out)",
              str(ct["closed_without_country_answers"]["n"]), _slope(ct["closed_without_country_answers"]),
              _yes(ct["closed_without_country_answers"])],
             ["without country answers - all", "", _slope(ct["difference"]), _yes(ct["difference"])]]
    ex = ct.get("exclude_countries_counts")
    if ex and "error" not in ex:
        rows += [[f"closed-book on --exclude-countries counts ({ex['n_count_changed']} counts changed)",
                  str(ex["n_linked_in_both"]), _slope(ex["closed_excluded_counts"]), _yes(ex["closed_excluded_counts"])],
                 ["  same questions, the run's counts", str(ex["n_linked_in_both"]), _slope(ex["closed_run_counts"]),
                  _yes(ex["closed_run_counts"])],
                 ["exclude-countries counts - run's counts", "", _slope(ex["difference"]), _yes(ex["difference"])]]
    out += _table(["slope", "n", "slope [95% CI]", "excludes 0"], rows)
    if ex and "error" in ex:
        out += [f"Exclude-countries counts {ex['path']}: not used ({ex['error']}).", ""]
    elif not ex:
        out += ["Kandpal et al.'s --exclude-countries (countries dropped from the question's entities) changes the counts, "
                "not the questions: set controls.exclude_countries_counts to counts built with it to see its effect here.", ""]

    b = c["blind"]
    out += ["### Subject-blind closed-book", ""]
    if not b.get("run"):
        out += ["Not run (set controls.subject_blind: true and rerun the same command; only the blind answers are computed).", ""]
        return "\n".join(out)
    unmatched = ", ".join(f"{k}: {v}" for k, v in (b.get("unmatched") or {}).items()) or "none"
    out += [f"The same closed-book prompt with the linked subject span replaced by {b.get('placeholder')!r}: "
            f"{b['n_answered']} questions answered blind ({b.get('n_blinded')} of {b.get('n_selected')} selected could be "
            f"blinded; not blinded: {unmatched}). What survives blinding is answer prior; a slope that vanishes blind "
            "is knowledge of the subject.", ""]
    out += _table(["bucket", "n", "closed-book", "blind", "blind - closed"],
                  [[k, str(r["n"]), _pct(r["closed"]), _pct(r["blind"]), _pct(r["blind_minus_closed"], True)]
                   for k, r in b["buckets"].items() if r["n"]])
    bs = b["slopes"]
    out += _table(["slope (linked questions answered blind)", "n", "slope [95% CI]", "excludes 0"],
                  [["closed-book", str(bs["closed"]["n"]), _slope(bs["closed"]), _yes(bs["closed"])],
                   ["blind", str(bs["blind"]["n"]), _slope(bs["blind"]), _yes(bs["blind"])],
                   ["blind - closed-book", "", _slope(bs["blind_minus_closed"]), _yes(bs["blind_minus_closed"])]])
    if b.get("examples"):
        out += ["Not blinded, e.g.:", ""] + [f"- {e['qid']}: {e['question']} (span {e['mention']!r}: {e['why']})"
                                              for e in b["examples"]] + [""]
    return "\n".join(out)
