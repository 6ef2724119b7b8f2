"""Controls for what a count measures (issue 20, 5): composition, majority baseline, slopes without countries and
within relations, and the subject-blind mode end to end with the fake reader (resume included)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rag.counts import OK, Q_UNLINKED, QuestionCount, qa_block, save_counts
from rag.evaluation.answer_types import answer_type
from rag.evaluation.blind import BLIND, NO_MENTION, NOT_FOUND, BlindSet, blind_question
from rag.evaluation.config import load_config
from rag.evaluation.controls import PairedFits, majority_answers, run_controls
from rag.evaluation.records import RecordStore
from rag.evaluation.run_folder import load_run
from rag.evaluation.runner import run_eval
from rag.evaluation.trends import fit_slopes
from rag.readers.fake import FakeReader
from rag.types import Question

COUNTRY_Q, BORN_Q = "In what country is {}?", "Where was {} born?"
PLACEHOLDER = "this entity"


def _relation_world():
    """(relation, subject, answer, count, mention) rows: P17 questions mostly answered "Japan" (a guessable prior),
    P19 questions with answers the fake reader knows only for well-counted subjects."""
    rows = []
    for i in range(30):
        count = [0, 3, 30, 300, 3000][i % 5]
        answer = "Japan" if i % 5 >= 2 or i % 3 == 0 else "Canada"
        rows.append(("P17", f"Station {i}", answer, count, f"Station {i}"))
    for i in range(30):
        count = [0, 3, 30, 300, 3000][i % 5]
        rows.append(("P19", f"Person {i}", f"Town {i}", count, f"Person {i}"))
    rows[-1] = ("P19", "Person 29", "Town 29", None, None)  # unlinked: no span
    rows[-2] = ("P19", "Person 28", "Town 28", 3000, "Persona 28")  # a span that is not in the question
    return rows


ROWS = _relation_world()


def _question(rel: str, subject: str) -> str:
    return (COUNTRY_Q if rel == "P17" else BORN_Q).format(subject)


def _known() -> dict[str, str]:
    known = {}
    for rel, subj, ans, count, _ in ROWS:
        q = _question(rel, subj)
        if rel == "P17":
            known[q] = "Japan"  # guesses the prior whatever the subject
        elif count is not None and count >= 300:
            known[q] = ans  # knows the popular people
    known[COUNTRY_Q.format(PLACEHOLDER)] = "Japan"  # the prior survives blinding
    return known


@pytest.fixture(scope="module")
def eq_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("controls")
    qa = root / "eq"
    qa.mkdir()
    by_rel: dict[str, list] = {}
    for rel, subj, ans, *_ in ROWS:
        by_rel.setdefault(rel, []).append({"question": _question(rel, subj), "answers": [ans]})
    for rel, recs in by_rel.items():
        (qa / f"{rel}.test.json").write_text(json.dumps(recs))
    counts, idx = [], {}
    for rel, subj, ans, count, mention in ROWS:
        n = idx[rel] = idx.get(rel, -1) + 1
        counts.append(QuestionCount(
            qid=f"entityquestions-{rel}-{n}", question=_question(rel, subj), answers=(ans,), q_entity=subj if mention else None,
            a_entity=ans, count=count or 0, q_entity_docs=0, a_entity_docs=0, status=OK if count is not None else Q_UNLINKED,
            method="entity" if count is not None else "none", q_source="entity" if mention else "", q_mention=mention))
    # numeric relation order: P17 (qids -0..-29) before P19
    save_counts(counts, root / "counts", qa=qa_block(qa))
    return root


def _config(root: Path, out: Path, blind: bool = True, **extra) -> Path:
    cfg = {"name": "controls", "qa": {"path": str(root / "eq")}, "counts": str(root / "counts"), "retrievers": [],
           "reader": {"model": "fake", "backend": "fake", "shots": 2, "options": {"known": _known()}},
           "batch_size": 8, "n_boot": 200, "out": str(out), "controls": {"subject_blind": blind, "min_group": 20}, **extra}
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Reader(FakeReader):
    """The fake reader that remembers every question it was asked and can fail after `fail_after` batches."""

    def __init__(self, fail_after: int | None = None):
        super().__init__(known=_known())
        self.asked: list[str] = []
        self.fail_after, self.batches = fail_after, 0

    def generate_batch(self, prompts, max_new_tokens=16):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.asked += [p.rstrip().split("\n")[-2][3:] for p in prompts]
        return super().generate_batch(prompts, max_new_tokens)


# --- pieces ----------------------------------------------------------------------------------------------------


def test_answer_types():
    assert answer_type(["Japan"]) == "country" and answer_type(["Town 3", "United States"]) == "country"
    assert answer_type(["May 18, 2018"]) == "number" and answer_type(["1990s"]) == "number"
    assert answer_type(["3.5 million"]) == "number" and answer_type(["twelve"]) == "number"
    assert answer_type(["Ludwig van Beethoven"]) == "person-like" and answer_type(["Barack Obama"]) == "person-like"
    assert answer_type(["politician"]) == "other" and answer_type(["Quebec Route 213"]) == "other"
    assert answer_type(["Oslo"]) == "other" and answer_type([]) == "other"


def test_majority_answer_is_leave_one_out():
    groups = {"a": "g", "b": "g", "c": "g", "d": "g", "e": "h", "f": "h", "z": "solo"}
    answers = {"a": ["Japan"], "b": ["Japan"], "c": ["japan."], "d": ["Canada"], "e": ["X"], "f": ["Y"], "z": ["Q"]}
    got = majority_answers(groups, answers)
    assert got["a"] == got["d"] == "Japan"  # d's own "Canada" has one vote; Japan three
    assert got["e"] == "Y" and got["f"] == "X"  # a two-question group: each gets the other's answer, never its own
    assert got["z"] is None  # nobody else votes
    # without its own vote the leader can change: 2 x P (q1, q2), 2 x R (q3, q4): q1 -> R (2 vs 1)
    got = majority_answers({q: "g" for q in "1234"}, {"1": ["P"], "2": ["P"], "3": ["R"], "4": ["R"]})
    assert got == {"1": "R", "2": "R", "3": "P", "4": "P"}


def test_blind_prompt_replaces_every_occurrence_and_counts_misses():
    assert blind_question("Who is the father of Anna Bell? Anna bell was", "Anna Bell", "X") == "Who is the father of X? X was"
    assert blind_question("Where was Bo born?", "Ann", "X") is None and blind_question("Q?", None, "X") is None
    qs = [Question("q1", "Where was Bo Li born?", ("Oslo",), {"relation": "P19"}), Question("q2", "Where was Al born?", ("A",)),
          Question("q3", "Where was Cy born?", ("C",))]
    bs = BlindSet.of(qs, {"q1": "Bo Li", "q2": "Alan"}, PLACEHOLDER)
    assert bs.questions["q1"].question == "Where was this entity born?" and bs.questions["q1"].answers == ("Oslo",)
    assert bs.questions["q1"].meta == {"relation": "P19", "blind_span": "Bo Li"}
    assert bs.to_json()["unmatched"] == {NOT_FOUND: 1, NO_MENTION: 1} and bs.to_json()["n_blinded"] == 1


def test_paired_fits_without_a_mask_equal_the_trends_fit():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 4, 120)
    y = (rng.random(120) < 1 / (1 + np.exp(-(x - 2)))).astype(float)
    strata = [str(int(v)) for v in x]
    pops = {"0": 500, "1": 200, "2": 100, "3": 50}
    (want,), _ = fit_slopes(x, [y], strata, pops, "logistic", n_boot=200, seed=4)
    got, boots = PairedFits(strata, pops, 200, 4).fit(x, y)
    assert got.slope == pytest.approx(want.slope) and got.lo == pytest.approx(want.lo) and got.hi == pytest.approx(want.hi)
    assert boots.shape == (200,)


# --- a run -----------------------------------------------------------------------------------------------------


def test_blind_mode_end_to_end_with_resume(eq_world, tmp_path):
    cfg = load_config(_config(eq_world, tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, progress=False, reader=Reader(fail_after=3))
    done = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert 0 < len(done) < 60 + 58
    second = Reader()
    res = run_eval(cfg, progress=False, reader=second)
    assert res.reused == len(done) and sum(res.computed.values()) == 60 + 58 - len(done)
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    blind = {q: r for (q, m), r in recs.items() if m == BLIND}
    assert len(blind) == 58  # two questions could not be blinded: counted, not asked
    r = blind["entityquestions-P17-0"]
    assert r.question == "In what country is this entity?" and r.prediction == "Japan" and r.answers == ("Japan",)
    assert blind["entityquestions-P19-27"].prediction == "unknown"  # the popular person is not known blind
    assert ("entityquestions-P19-28", BLIND) not in recs and ("entityquestions-P19-29", BLIND) not in recs
    info = json.loads((tmp_path / "run" / "blind.json").read_text())
    assert info["n_blinded"] == 58 and info["unmatched"] == {NOT_FOUND: 1, NO_MENTION: 1}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["modes"][BLIND]["placeholder"] == PLACEHOLDER
    third = Reader()
    res = run_eval(cfg, progress=False, reader=third)
    assert third.asked == [] and res.reused == 118  # nothing recomputed, the unblinded two not pending forever

    c = json.loads((tmp_path / "run" / "controls.json").read_text())
    b = c["blind"]
    assert b["run"] and b["n_answered"] == 58 and b["slopes"]["blind"]["n"] == 58  # every blinded question is linked
    # blind: P17 stays right (prior), P19 drops to 0 -> per bucket blind - closed <= 0
    assert all(row["blind_minus_closed"]["mean"] <= 0 for row in b["buckets"].values() if row["n"])
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "## Controls: what the count measures" in md and "### Subject-blind closed-book" in md
    assert "'this entity'" in md and "span not found in the question: 1" in md

    # a placeholder change would blind differently: refused, like any identity change
    from rag.errors import BadInputError

    other = load_config(_config(eq_world, tmp_path / "run"), explicit={"controls.placeholder": "X"})
    with pytest.raises(BadInputError, match="closed-blind.placeholder"):
        run_eval(other, progress=False, reader=Reader())


def test_controls_composition_majority_and_countries(eq_world, tmp_path):
    cfg = load_config(_config(eq_world, tmp_path / "run", blind=False))
    run_eval(cfg, progress=False, reader=Reader())
    c = run_controls(load_run(tmp_path / "run"))
    assert c["grouping"] == "relation"
    comp = c["composition"]
    assert comp[">=1000"]["by_group"] == {"P17": 6, "P19": 6} and comp["unlinked"]["by_group"] == {"P19": 1}
    assert c["answer_types"][">=1000"]["by_group"] == {"country": 6, "other": 6}
    maj = c["majority"]
    # P17 is mostly Japan: its majority baseline (leave-one-out) equals closed-book, which always says Japan
    assert maj["groups"]["P17"]["top"]["answer"] == "Japan"
    assert maj["groups"]["P17"]["majority"]["mean"] == pytest.approx(maj["groups"]["P17"]["closed"]["mean"])
    assert maj["groups"]["P19"]["majority"]["mean"] == 0.0  # every P19 answer differs
    assert maj["buckets"]["0"]["n"] == 12
    # countries: every P17 answer is a country; without them only P19 is left, where the reader knows the popular
    ct = c["countries"]
    assert ct["n_country_answers"] == 30 and ct["closed_without_country_answers"]["n"] == 29
    assert ct["closed_without_country_answers"]["slope"] > ct["closed"]["slope"]
    assert ct["difference"]["slope"] == pytest.approx(ct["closed_without_country_answers"]["slope"] - ct["closed"]["slope"])
    within = c["slopes"]["within"]
    assert within["P17"]["n"] == 30 and within["P19"]["n"] == 29 and c["slopes"]["pooled_within"]["n"] == 59
    assert c["blind"] == {"run": False} and c["countries"]["exclude_countries_counts"] is None
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "### Composition of each bucket by relation" in md and "| P17 |" in md and "### Majority-answer baseline" in md
    assert "closed-book without country answers (30 left out)" in md and "Not run (set controls.subject_blind" in md


def test_exclude_countries_counts_refit_the_slope(eq_world, tmp_path):
    from rag.counts import load_counts

    rows, manifest = load_counts(eq_world / "counts")
    # counts built without country question entities: here every P17 count drops to 0
    from dataclasses import replace

    save_counts([replace(r, count=0) if "-P17-" in r.qid else r for r in rows], tmp_path / "noc", qa=manifest["qa"])
    cfg = load_config(_config(eq_world, tmp_path / "run", blind=False,
                              controls={"exclude_countries_counts": str(tmp_path / "noc")}))
    run_eval(cfg, progress=False, reader=Reader())
    ex = json.loads((tmp_path / "run" / "controls.json").read_text())["countries"]["exclude_countries_counts"]
    assert ex["n_linked_in_both"] == 59 and ex["n_count_changed"] == 24  # the 30 P17 counts, 6 of them already 0
    assert "--exclude-countries counts (24 counts changed)" in (tmp_path / "run" / "summary.md").read_text()


def test_answer_type_grouping_without_relations(tmp_path):
    """A QA set without relations (jsonl): groups are answer types; an old run (no blind.json) reports "not run"."""
    from rag.counts import write_counts

    qs = [("what is the capital of norway", "Oslo", 500), ("where is mount fuji", "Japan", 3000),
          ("in which year did ww2 end", "1945", 40), ("who wrote hamlet", "William Shakespeare", 900),
          ("where is kyoto", "Japan", 5), ("who painted guernica", "Pablo Picasso", 2)]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answers": [a]}) + "\n" for q, a, _ in qs))
    write_counts(tmp_path / "counts", [{"qid": f"qa-{i}", "question": q, "count": c} for i, (q, _, c) in enumerate(qs)], qa_path=qa)
    cfg = {"name": "t", "qa": {"path": str(qa)}, "counts": str(tmp_path / "counts"), "retrievers": [], "n_boot": 100,
           "reader": {"model": "fake", "backend": "fake", "shots": 2, "options": {"known": {q: a for q, a, _ in qs[:3]}}},
           "out": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_eval(load_config(tmp_path / "c.yaml"), progress=False, reader=None)
    c = run_controls(load_run(tmp_path / "run"))
    assert c["grouping"] == "answer type"
    assert c["majority"]["groups"]["country"]["top"] == {"answer": "Japan", "votes": 2, "n": 2}
    assert c["majority"]["groups"]["country"]["majority"]["mean"] == 1.0  # each Japan question gets the other's Japan
    assert c["majority"]["groups"]["person-like"]["majority"]["mean"] == 0.0
    assert "by answer type" in (tmp_path / "run" / "summary.md").read_text()


def test_report_of_a_run_without_records_says_so(eq_world, tmp_path):
    from rag.evaluation.controls import controls_markdown
    from rag.evaluation.report import render

    cfg = load_config(_config(eq_world, tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, progress=False, reader=Reader(fail_after=0))
    render(tmp_path / "run", plots=False)
    c = json.loads((tmp_path / "run" / "controls.json").read_text())
    assert c["n_questions"] == 0 and "No closed-book record yet" in controls_markdown(c)
