"""Gold-answer log-probability (issue 20, req 1): scored after the very prompt that was answered, stored in the
records, summarized per bucket, usable as a metric; deterministic with the fake reader; survives kill -9."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.evaluation.config import load_config
from rag.evaluation.records import EvalRecord, RecordStore
from rag.evaluation.runner import run_eval
from rag.readers.answer import answer
from rag.readers.base import (MAX_GOLD_ALIASES, Generation, Reader, Score, ScoringNotSupported, best_gold,
                              gold_continuation, scored_aliases)
from rag.readers.fake import FakeReader
from rag.types import Question
from tests.unit.test_eval_run import KNOWN, world, write_config  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]


class NoScoring(Reader):
    """A reader whose backend cannot score continuations (as the transformers backend)."""

    name = "no-scoring"

    def generate_batch(self, prompts, max_new_tokens=16):
        return [Generation("x", 1, 1) for _ in prompts]

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    @classmethod
    def load(cls, model, **options):
        return cls()


def test_the_fake_reader_scores_deterministically():
    r = FakeReader(known={"who wrote hamlet": "William Shakespeare"})
    p = "Q: who wrote hamlet\nA:"
    (s,) = r.score_batch([p], [" William Shakespeare"])
    assert s.tokens == ("William", "Shakespeare") and s.logprob == pytest.approx(2 * math.log(0.9))
    (s,) = r.score_batch([p], [" Christopher Marlowe"])
    assert s.logprob == pytest.approx(2 * math.log(0.05))
    gens = r.generate_scored_batch([p, p], [["Marlowe", "Shakespeare", "Shakespeare"], ["Bacon"]])
    assert gens[0].text == "William Shakespeare" and gens[0].gold.answer == "Shakespeare"
    assert gens[0].gold.tokens == 1 and gens[0].gold.per_token == pytest.approx(math.log(0.9))
    assert gens[1].gold.answer == "Bacon" and gens[1].gold.logprob == pytest.approx(math.log(0.05))
    assert r.generate_scored_batch([p], [["Bacon"]]) == r.generate_scored_batch([p], [["Bacon"]])


def test_aliases_continuations_and_the_best_one():
    assert scored_aliases([" Paris ", "Paris", "", "paris"]) == ["Paris", "paris"]
    assert len(scored_aliases([f"a{i}" for i in range(100)])) == MAX_GOLD_ALIASES
    assert gold_continuation("Q: x\nA:", "Paris") == " Paris" and gold_continuation("Answer: ", "Paris") == "Paris"
    s = [Score(-3.0, (-1.0, -2.0), ("a", "b")), Score(-1.5, (-1.5,), ("c",)), Score(-1.5, (-0.5, -1.0), ("d", "e"))]
    g = best_gold(["ab", "c", "de"], s)
    assert (g.answer, g.logprob, g.tokens) == ("c", -1.5, 1)  # ties keep the earlier alias
    assert best_gold([], []) is None


def test_answer_scores_golds_and_auto_skips_a_backend_that_cannot(caplog):
    qs = [Question("q1", "who wrote hamlet", ("Shakespeare",)), Question("q2", "capital of peru", ("Lima",))]
    preds = answer(FakeReader(known={"who wrote hamlet": "Shakespeare"}), qs, score_gold=True)
    assert [p.gold_answer for p in preds] == ["Shakespeare", "Lima"]
    assert preds[0].gold_logprob == pytest.approx(math.log(0.9)) and preds[1].gold_logprob == pytest.approx(math.log(0.05))
    assert answer(FakeReader(), qs)[0].gold_logprob is None  # not asked
    r = NoScoring()
    with pytest.raises(ScoringNotSupported):
        answer(r, qs, score_gold=True)
    preds = answer(r, qs, score_gold="auto", batch_size=1)
    assert [p.answer for p in preds] == ["x", "x"] and all(p.gold_logprob is None for p in preds)
    assert caplog.text.count("does not score continuations") == 1  # asked once per reader


def test_regex_golds_score_their_literal_aliases_only():
    q = Question("q", "what year", (r"19[0-9]{2}",), meta={"match_type": "regex"})
    (p,) = answer(FakeReader(), [q], score_gold=True)
    assert p.gold_logprob is None  # a pattern has no literal alias to score


def test_records_round_trip_and_older_records_load():
    base = dict(qid="q", mode="closed", question="x", answers=("a",), count=3, status="ok", count_method="entity",
                prediction="a", em=1.0, f1=1.0, contains=1.0, prompt_tokens=5, new_tokens=1)
    old = EvalRecord(**base)
    assert "gold_logprob" not in old.to_json() and math.isnan(old.score("logprob"))
    new = EvalRecord(**base, gold_answer="a", gold_logprob=-0.5, gold_tokens=2)
    assert EvalRecord.from_json(json.loads(json.dumps(new.to_json()))) == new
    assert new.score("logprob") == -0.5 and new.score("logprob_per_token") == -0.25


def test_eval_run_stores_summarizes_and_compares_logprobs(world, tmp_path):  # noqa: F811
    cfg = load_config(write_config(world, tmp_path / "run", metric="logprob"))
    res = run_eval(cfg, progress=False, reader=FakeReader(known=KNOWN))
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert res.computed == {"closed": 12, "rag:bm25": 12}
    assert all(r.gold_logprob is not None and r.gold_tokens >= 1 for r in recs.values())
    # the reader's own answer scores log 0.9 per word: right answers score higher than wrong ones
    right = [r.gold_logprob / r.gold_tokens for r in recs.values() if r.em == 1.0]
    wrong = [r.gold_logprob / r.gold_tokens for r in recs.values() if r.em == 0.0]
    assert min(right) > max(wrong)
    doc = json.loads((tmp_path / "run" / "logprob.json").read_text())
    assert {row["mode"] for row in doc["buckets"]} == {"closed", "rag:bm25"}
    for row in doc["buckets"]:
        assert row["n"] >= 1 and row["lo"] <= row["mean"] <= row["hi"]
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "Gold-answer log-probability" in md
    assert (tmp_path / "run" / "plots" / "logprob.png").exists()
    from click.testing import CliRunner

    from rag.cli import main

    r = CliRunner().invoke(main, ["eval", "compare", str(tmp_path / "run"), str(tmp_path / "run"), "--measure", "logprob"])
    assert r.exit_code == 0, r.output
    assert "logprob" in r.output


SLOW = """
import sys, time
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from tests.unit.test_eval_run import KNOWN
from rag.readers.fake import FakeReader

class Slow(FakeReader):
    def generate_scored_batch(self, prompts, golds, max_new_tokens=16):
        time.sleep(0.3)
        out = super().generate_scored_batch(prompts, golds, max_new_tokens)
        print("batch", flush=True)
        return out

run_eval(load_config(sys.argv[1]), progress=False, reader=Slow(known=KNOWN, name="fake"))
"""


def test_kill_9_resumes_with_identical_logprobs(world, tmp_path):  # noqa: F811
    ref_cfg = load_config(write_config(world, tmp_path / "ref"))
    run_eval(ref_cfg, progress=False, reader=FakeReader(known=KNOWN, name="fake"))
    path = write_config(world, tmp_path / "run")
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for _ in range(2):  # two batches written, then killed in the middle of the next ones
            assert proc.stdout.readline().strip() == "batch"
        time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert 0 < len(done) < 24
    res = run_eval(load_config(path), progress=False, reader=FakeReader(known=KNOWN, name="fake"))
    assert res.reused == len(done)
    got = RecordStore(tmp_path / "run" / "records.jsonl").load()
    want = RecordStore(tmp_path / "ref" / "records.jsonl").load()
    assert set(got) == set(want)
    for k in want:
        assert got[k].gold_logprob == want[k].gold_logprob and got[k].gold_answer == want[k].gold_answer
        assert got[k].em == want[k].em
