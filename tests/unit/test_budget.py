"""Budgeted sampling: plans never exceed the budget, stay nested, and a budgeted run stops cleanly and extends."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from rag.errors import BadInputError
from rag.evaluation.budget import MIN_PER_BUCKET, parse_duration, plan
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from rag.evaluation.sampling import stratified_sample
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)

POP = {"0": 4000, "1-9": 2500, "10-99": 900, "100-999": 250, ">=1000": 60, "unlinked": 1500}
CENTRES = {"0": 0.0, "1-9": 0.65, "10-99": 1.5, "100-999": 2.5, ">=1000": 3.5, "unlinked": None}


def test_parse_duration():
    assert parse_duration("90m") == 5400 and parse_duration("1.5h") == 5400 and parse_duration("600s") == 600
    assert parse_duration("45") == 45
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(BadInputError):
            parse_duration(bad)


@pytest.mark.parametrize("allocation", ["slope", "equal"])
def test_plans_never_exceed_the_budget_on_simulated_costs(allocation):
    rng = np.random.default_rng(0)
    for _ in range(300):
        cost = float(rng.uniform(0.05, 30))
        budget = float(rng.uniform(1, 20_000))
        done = {b: int(rng.integers(0, 20)) for b in POP}
        p = plan(POP, CENTRES, cost, budget, allocation, done=done)
        new = sum(max(0, p.per_bucket[b] - min(done[b], POP[b])) for b in POP)
        assert new * cost <= budget + 1e-9
        assert all(min(done[b], POP[b]) <= p.per_bucket[b] <= POP[b] for b in POP)
        if new * cost + cost <= budget:  # money left over only when every bucket is exhausted
            assert all(p.per_bucket[b] == POP[b] for b in POP)


def test_slope_allocation_favours_the_ends_and_keeps_a_floor():
    p = plan(POP, CENTRES, cost=1.0, budget_s=600, allocation="slope")
    e = plan(POP, CENTRES, cost=1.0, budget_s=600, allocation="equal")
    assert sum(p.per_bucket.values()) == sum(e.per_bucket.values()) == 600
    assert all(n >= MIN_PER_BUCKET for n in p.per_bucket.values())
    assert p.per_bucket["unlinked"] == MIN_PER_BUCKET  # no x: no help to the slope
    assert max(e.per_bucket.values()) - min(e.per_bucket.values()) <= 60  # >=1000 has only 60
    assert p.per_bucket["0"] > p.per_bucket["10-99"]


def test_larger_budgets_give_nested_samples():
    qids = [f"q{i}" for i in range(2000)]
    labels = [list(POP)[i % 6] for i in range(2000)]
    pops = {b: labels.count(b) for b in POP}
    small = plan(pops, CENTRES, 1.0, 100, "slope").per_bucket
    big = plan(pops, CENTRES, 1.0, 400, "slope").per_bucket
    assert all(big[b] >= small[b] for b in pops)
    a, _ = stratified_sample(qids, labels, small, seed=3)
    b, _ = stratified_sample(qids, labels, big, seed=3)
    assert set(a) <= set(b)


class SlowReader(CountingReader):
    def generate_batch(self, prompts, max_new_tokens=16):
        time.sleep(0.05 * len(prompts))
        return super().generate_batch(prompts, max_new_tokens)


def test_a_budgeted_run_plans_records_the_plan_and_stops_at_the_budget(world, tmp_path):  # noqa: F811
    cfg = load_config(write_config(world, tmp_path / "run", budget="1s", batch_size=1))
    res = run_eval(cfg, progress=False, reader=SlowReader())
    sel = json.loads((tmp_path / "run" / "selection.json").read_text())
    plan_ = sel["plan"]
    assert plan_["allocation"] == "slope" and plan_["budget_s"] == 1.0 and plan_["cost_per_question_s"] > 0.05
    assert sel["per_bucket"] is None and len(sel["qids"]) == plan_["n_questions"] < 12
    assert "budget 0 min" in (tmp_path / "run" / "summary.md").read_text()
    n1 = len((tmp_path / "run" / "records.jsonl").read_text().splitlines())
    # a larger budget extends the same run: the records so far are kept, more questions are added
    cfg = load_config(write_config(world, tmp_path / "run", budget="60s", batch_size=1))
    res = run_eval(cfg, progress=False, reader=SlowReader())
    assert res.reused == n1 and len((tmp_path / "run" / "records.jsonl").read_text().splitlines()) == 24
    assert not res.stopped_by_budget


def test_the_run_stops_cleanly_when_the_budget_is_spent(world, tmp_path):  # noqa: F811
    from rag.evaluation.runner import run_budgeted

    ticks = iter(range(10**6))
    cfg = load_config(write_config(world, tmp_path / "run", budget="3s", batch_size=1))
    res = run_budgeted(cfg, progress=False, reader=SlowReader(), clock=lambda: float(next(ticks)))
    assert res.stopped_by_budget
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    assert 12 <= len(lines) < 24  # the pilot (a question per bucket, both modes) and what fit before the deadline
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "partial"


def test_budget_flags_on_the_command_line(world, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from rag.cli import main

    cfg = write_config(world, tmp_path / "run", reader={"model": "fake", "backend": "fake", "shots": 1})
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--budget", "60s", "--allocation", "equal", "--no-progress"])
    assert r.exit_code == 0, r.output
    plan_ = json.loads((tmp_path / "run" / "selection.json").read_text())["plan"]
    assert plan_["allocation"] == "equal" and plan_["n_questions"] == 12
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--budget", "soon", "--no-progress"])
    assert r.exit_code == 2 and "expected a duration" in r.output
