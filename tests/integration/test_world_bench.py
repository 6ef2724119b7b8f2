"""`rag bench` end to end at a reduced size through the CLI, its reuse of finished steps and refusals, and
the default world's names checked against the DBpedia surface forms."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main

pytestmark = pytest.mark.integration

TINY = ["--people", "16", "--orgs", "5", "--cities", "5", "--countries", "3", "--max-count", "60", "--distractors", "20",
        "--reading-docs", "30", "--steps", "8", "--d-model", "32", "--layers", "1", "--threads", "1",
        "--encoder", "hash:64", "--no-progress"]


@pytest.mark.slow
def test_tiny_bench_end_to_end_and_rerun(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("faiss")
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench", "--out", str(out), *TINY, "--counterfactual", "2", "--export", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    exported = {p.relative_to(tmp_path / "res").as_posix() for p in (tmp_path / "res").rglob("*") if p.is_file()}
    assert {"report.md", "bench.json", "agreement.json", "eval-summary.csv", "probes.json", "plots/probes.png"} <= exported
    assert not any("records" in e or "safetensors" in e for e in exported)
    summary = json.loads((out / "bench.json").read_text())
    a = summary["agreement"]
    assert a["exact"] == a["n_questions"] > 0 and a["n_mismatches"] == 0  # linker counts == ground truth
    report = (out / "report.md").read_text()
    for part in ("Counter validation", "100.0%", "closed-book", "RAG bm25", "RAG dense", "memorization", "semantic",
                 "composition", "Counterfactual"):
        assert part in report, part
    assert (out / "plots" / "probes.png").exists() and (out / "eval" / "records.jsonl").exists()
    page = (out / "eval" / "report.html").read_text()  # the per-question explorer, written by every bench run
    assert 'id="rag-data"' in page and "Failure attribution" in page and "eval/report.html" in report
    cf = summary["counterfactual"]
    assert cf["n_facts"] == 2 and cf["n_docs_removed"] > 0
    assert json.loads((out / "model-cf" / "manifest.json").read_text())["excluded"]["n_docs"] == cf["n_docs_removed"]

    # a rerun reuses every finished step
    r = CliRunner().invoke(main, ["bench", "--out", str(out), *TINY, "--counterfactual", "2"])
    assert r.exit_code == 0, r.output
    steps = json.loads((out / "bench.json").read_text())["steps"]
    assert all(s["reused"] for s in steps.values()), steps

    # other settings in the same folder are refused, not mixed
    r = CliRunner().invoke(main, ["bench", "--out", str(out), *TINY, "--seed", "5"])
    assert r.exit_code == 2 and "other settings" in r.output


@pytest.mark.slow
def test_tiny_bench_adds_dynamics_and_inject_sections(tmp_path, monkeypatch):
    """`rag bench --dynamics-preset P --inject`: both experiments run into the bench folder, each adds its section
    to report.md and its committable part to the export; what the bench had finished is reused."""
    pytest.importorskip("torch")
    from rag.world import dynamics
    from rag.world.dynamics import Condition, DynamicsConfig
    from rag.world.generator import WorldParams
    from rag.world.tinylm import TinyConfig

    monkeypatch.setitem(dynamics.PRESETS, "test-tiny", DynamicsConfig(
        world=WorldParams(n_people=16, n_orgs=5, n_cities=5, n_countries=3, max_count=40, n_distractor_docs=10,
                          n_reading_docs=0, n_nonce=0, n_demo_people=0),
        model=TinyConfig(n_layer=1, n_head=2, d_model=16, block_size=64),
        conditions=(Condition("base", batch_size=8, interval=4, d_model=16),), n_people=1, n_orgs=1, injections=3,
        base_steps=10, base_batch=8, tail=8, window=4, warmup=5, checkpoint_every=5))
    out = tmp_path / "bench"
    base = ["bench", "--out", str(out), *TINY, "--retriever", "bm25"]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*base, "--dynamics-preset", "test-tiny", "--inject", "--export", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    steps = json.loads((out / "bench.json").read_text())["steps"]
    assert steps["train"]["reused"] and not steps["dynamics"]["reused"] and not steps["inject"]["reused"]
    report = (out / "report.md").read_text()
    assert "Knowledge acquisition and forgetting during training" in report and "](dynamics/plots/logprob-base.png)" in report
    assert "Injecting new facts: further training vs retrieval" in report and "train-lora" in report
    assert (tmp_path / "res" / "dynamics" / "measures.json").exists() and (tmp_path / "res" / "inject" / "inject.json").exists()


def test_bad_generator_parameters_are_clear_errors(tmp_path):
    for args, msg in ((["--people", "0"], "n_people must be at least 1"), (["--max-count", "-5"], "max_count"),
                      (["--zipf", "0"], "zipf must be a positive number")):
        r = CliRunner().invoke(main, ["bench", "--out", str(tmp_path / "b"), *args, "--no-progress"])
        assert r.exit_code == 2 and msg in r.output, r.output


@pytest.mark.slow
def test_default_world_names_are_not_real_names(shared_data):
    from rag.world.generator import WorldParams, generate, load_avoid_list

    real = load_avoid_list(shared_data / "entities" / "dbpedia-surface-forms.tsv.xz")
    for seed in (0, 1, 2):  # the default world, and two more: the naming rules, not one lucky seed
        w = generate(WorldParams(seed=seed))
        forms = [a for e in w.entities if e.type != "year" for a in e.aliases]  # years are real numbers by design
        assert not [f for f in forms if f.lower() in real], seed


PINS = Path(__file__).resolve().parents[1] / "data" / "pins" / "world-bench"
from tests.unit.test_eval_pin import without_gold  # noqa: E402

PINNED = {"eval/records.jsonl": "records.jsonl", "eval/summary.csv": "summary.csv", "counterfactual.json": "counterfactual.json"}


@pytest.mark.slow
def test_tiny_bench_output_is_pinned(tmp_path):
    """The tiny world benchmark's evaluation records, summary and counterfactual, byte for byte as committed in
    tests/data/pins/world-bench/ (made by the code before issue 15's pipeline and record refactor). A change that
    is meant to alter them regenerates the pins with RAG_UPDATE_PINS=1 and says why in its commit."""
    pytest.importorskip("torch")
    pytest.importorskip("faiss")
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench", "--out", str(out), *TINY, "--counterfactual", "2"])
    assert r.exit_code == 0, r.output
    if os.environ.get("RAG_UPDATE_PINS"):
        for src, pin in PINNED.items():
            data = (out / src).read_bytes()
            (PINS / pin).write_bytes(without_gold(data) if pin == "records.jsonl" else data)
    for src, pin in PINNED.items():
        got = (out / src).read_bytes()
        got = without_gold(got) if pin == "records.jsonl" else got  # pinned before issue 20's gold log-probability
        assert got == (PINS / pin).read_bytes(), f"{src} differs from tests/data/pins/world-bench/{pin}"
