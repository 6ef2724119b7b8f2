"""`rag world dynamics` on a tiny world: injected rows counted, logged log-probabilities equal to a direct
evaluation of the saved model, the decay-constant fit against known constants, byte-identical logs after
kill -9, the report and the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from rag.world.dynamics import Condition, DynamicsConfig, load_log, make_batch, pack_rows, run_dynamics  # noqa: E402
from rag.world.generator import WorldParams, read_jsonl  # noqa: E402
from rag.world.measures import fit_decay, log_grid, measure  # noqa: E402
from rag.world.tinylm import TinyConfig, TinyLM  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(base_steps: int = 20, tail: int = 40, conditions=None) -> DynamicsConfig:
    return DynamicsConfig(
        world=WorldParams(n_people=16, n_orgs=5, n_cities=5, n_countries=3, max_count=40, n_distractor_docs=10,
                          n_reading_docs=0, n_nonce=0, n_demo_people=0),
        model=TinyConfig(n_layer=1, n_head=2, d_model=16, block_size=64),
        conditions=conditions or (Condition("base", batch_size=8, interval=4, d_model=16),
                                  Condition("batch16", batch_size=16, interval=4, d_model=16)),
        n_people=1, n_orgs=1, injections=3, base_steps=base_steps, base_batch=8, tail=tail, window=4, warmup=5,
        checkpoint_every=5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dyn") / "run"
    cfg = tiny_config()
    run_dynamics(cfg, out, threads=1, progress=False, keep_checkpoints=True)
    return cfg, out


def test_injection_replaces_batch_rows_and_they_are_counted(run):
    cfg, out = run
    data = np.arange(1000, dtype=np.int32) % 97
    seqs = {"duplicate": [[500 + i] * 30 for i in range(3)], "once": [[600] * 50]}
    plain, none = make_batch(data, 63, 8, (0, 1, 7))
    injected, rows = make_batch(data, 63, 8, (0, 1, 7), seqs)
    assert none == {} and rows == {"duplicate": [0, 1], "once": [2]}  # two 30-token texts fill row 0 of 64, one row 1
    changed = [r for r in range(8) if not np.array_equal(plain[r], injected[r])]
    assert changed == [0, 1, 2]  # exactly the rows reported, the others are the same random windows
    assert list(injected[0, :60]) == [500] * 30 + [501] * 30 and list(injected[2, :50]) == [600] * 50
    assert np.array_equal(injected[0, 60:], plain[0, 60:])  # the rest of a row keeps its window
    assert pack_rows([[1] * 40, [2] * 30, [3] * 20], 64) == [[1] * 40, [2] * 30 + [3] * 20]

    # in the run: every injection update logs the rows it replaced, the manifest counts them
    for c in cfg.conditions:
        inj, U = cfg.schedule(c)
        lines = read_jsonl(out / c.name / "log.jsonl")
        assert [ln["u"] for ln in lines] == list(range(U + 1))
        with_rows = [ln for ln in lines if "rows" in ln]
        assert [ln["u"] for ln in with_rows] == inj
        assert set(with_rows[0]["rows"]) == {"duplicate", "paraphrase", "once"}
        assert all("once" not in ln["rows"] for ln in with_rows[1:])
        m = json.loads((out / c.name / "manifest.json").read_text())
        assert m["rows_replaced"] == {sc: sum(len(ln["rows"].get(sc, [])) for ln in with_rows) for sc in ("duplicate", "paraphrase", "once")}
        assert m["rows_replaced"]["duplicate"] == len(inj) * len(with_rows[0]["rows"]["duplicate"])


def test_logged_logprobs_equal_a_direct_evaluation_of_the_saved_model(run):
    cfg, out = run
    probes = read_jsonl(out / "probes.jsonl")
    prefixes, targets = [p["prefix"] for p in probes], [p["target"] for p in probes]
    for c in cfg.conditions:
        u, L = load_log(out / c.name)
        _, U = cfg.schedule(c)
        assert u[0] == 0 and u[-1] == U
        direct = np.array([lp for lp, _, _ in TinyLM(out / c.name / "model").target_logprobs(prefixes, targets)])
        assert np.abs(direct - L[-1]).max() < 1e-4  # the saved model after the last update
        base = np.array([lp for lp, _, _ in TinyLM(out / "base-d16" / "model").target_logprobs(prefixes, targets)])
        assert np.abs(base - L[0]).max() < 1e-4  # row 0: the base model before the first update
        assert not np.allclose(L[0], L[-1])
    # equal tokens: the batch-16 condition has half the updates of the batch-8 one
    assert cfg.schedule(cfg.conditions[1])[1] * 2 - 1 == cfg.schedule(cfg.conditions[0])[1]


def test_decay_fit_recovers_known_constants():
    t = log_grid(500)
    for a, b in ((0.1, 1.0), (0.35, 0.9), (0.0, 0.5)):
        fa, fb, r2 = fit_decay(t, b - a * np.log(t))
        assert abs(fa[0] - a) < 1e-9 and abs(fb[0] - b) < 1e-9 and (a == 0 or r2[0] > 0.999999)
    # whole pipeline: per-probe logs whose retention after the last local maximum is R(t) = b - a ln t, plus noise
    rng = np.random.default_rng(0)
    a_true, b_true, P, U, inj = 0.12, 0.9, 40, 700, [1, 21, 41]
    u = np.arange(U + 1)
    gain = rng.uniform(1.0, 3.0, P)
    L0 = rng.normal(-8, 1, P)
    L = np.tile(L0, (U + 1, 1))
    peak = inj[-1] + 3  # each injection's local maximum comes 3 updates after it
    for i, ui in enumerate(inj[:-1]):
        L[ui : ui + 4] += gain * (i + 1) / len(inj)
    L[inj[-1] : peak] = L0 + 0.8 * gain
    L[peak] = L0 + gain
    t = np.arange(1, U - peak + 1)
    L[peak + 1 :] = L0 + gain * (b_true - a_true * np.log(t))[:, None]
    L += rng.normal(0, 0.005, L.shape)
    m = measure(u, L, inj, window=10)
    d = m["decay"]
    assert abs(d["a"] - a_true) < 0.005 and abs(d["b"] - b_true) < 0.01 and d["r2"] > 0.99 and d["lo"] <= d["a"] <= d["hi"]
    assert abs(d["x_intercept"] - np.exp(b_true / a_true)) / np.exp(b_true / a_true) < 0.2
    assert m["lam"]["steps_after_injection"] == 3 and abs(m["lam"]["gain"]["mean"] - gain.mean()) < 0.01
    assert abs(m["effectivity"]["per_injection"][0] - gain.mean() / 3) < 0.02
    # the same on a sparse log (every update in the windows, log-spaced later): interpolation keeps the constant
    keep = sorted({0, U, *range(0, 60), *(peak + log_grid(U - peak, 30))})
    ms = measure(u[keep], L[keep], inj, window=10)
    assert abs(ms["decay"]["a"] - a_true) < 0.01 and abs(ms["effectivity"]["mean"] - m["effectivity"]["mean"]) < 1e-9


def test_a_group_that_learns_nothing_is_reported_not_acquired():
    rng = np.random.default_rng(1)
    L = rng.normal(-6, 0.3, (201, 20))
    m = measure(np.arange(201), L, [1, 11], window=5)
    assert "a" not in m["decay"] and "not acquired" in m["decay"]["reason"]
    assert m["final_gain"]["lo"] < 0 < m["final_gain"]["hi"]


def test_report_and_measures(run):
    cfg, out = run
    m = json.loads((out / "measures.json").read_text())
    assert set(m["conditions"]) == {"base", "batch16"}
    groups = m["conditions"]["base"]["groups"]
    assert {(g["scenario"], g["kind"], g["series"]) for g in groups} >= {("once", "memorization", "paired"), ("duplicate", "semantic", "raw")}
    md = (out / "dynamics.md").read_text()
    assert "Condition `base`" in md and "effectivity" in md and "decay a" in md
    for name in ("logprob-base.png", "retention-base.png", "conditions.png"):
        assert (out / "plots" / name).exists()
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "world-dynamics" and man["conditions"] == ["base", "batch16"]
    # other settings in the same folder are refused
    from rag.errors import BadInputError

    with pytest.raises(BadInputError, match="other settings"):
        run_dynamics(tiny_config(base_steps=25), out, threads=1, progress=False)


_RUN = """
import json, sys
from rag.world.dynamics import config_from_json, run_dynamics
run_dynamics(config_from_json(json.loads(open(sys.argv[2]).read())), sys.argv[1], threads=1, progress=False)
"""


def test_kill_9_resumes_with_identical_logs(run, tmp_path):
    """A run killed with SIGKILL in the middle of a condition continues from its last checkpoint; its logs equal,
    byte for byte, those of the run never interrupted (same seed and thread count)."""
    from rag.world.dynamics import config_json

    cfg, ref = run
    (tmp_path / "cfg.json").write_text(json.dumps(config_json(cfg)))
    (tmp_path / "run.py").write_text(_RUN)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(killed), str(tmp_path / "cfg.json")], env=env, cwd=ROOT)
    latest = killed / "base" / "ckpt" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(latest.read_text())["step"] >= 10:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    was_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert was_running, "the run finished before it could be killed; make it longer"
    assert not (killed / "base" / "manifest.json").exists()  # killed mid-condition
    run_dynamics(cfg, killed, threads=1, progress=False)
    for rel in ("base-d16/log.jsonl", "base/log.jsonl", "batch16/log.jsonl"):
        assert (ref / rel).read_bytes() == (killed / rel).read_bytes(), rel


def test_cli_runs_a_preset_and_exports(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rag.cli import main
    from rag.world import dynamics

    monkeypatch.setitem(dynamics.PRESETS, "test-tiny", tiny_config(base_steps=10, tail=8,
                                                                   conditions=(Condition("base", batch_size=8, interval=4, d_model=16),)))
    out = tmp_path / "d"
    args = ["world", "dynamics", "--preset", "test-tiny", "--out", str(out), "--threads", "1", "--no-progress"]
    r = CliRunner().invoke(main, [*args, "--export", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    assert "Knowledge acquisition and forgetting" in r.output
    exported = {p.relative_to(tmp_path / "res").as_posix() for p in (tmp_path / "res").rglob("*") if p.is_file()}
    assert {"measures.json", "dynamics.md", "conditions.json", "plots/logprob-base.png"} <= exported
    assert not any(e.endswith((".safetensors", "log.jsonl")) for e in exported)
    before = (out / "base" / "log.jsonl").read_bytes()
    r = CliRunner().invoke(main, args)  # a rerun reuses the finished condition
    assert r.exit_code == 0 and (out / "base" / "log.jsonl").read_bytes() == before
    r = CliRunner().invoke(main, [*args, "--condition", "nope"])
    assert r.exit_code == 2 and "unknown condition" in r.output
    r = CliRunner().invoke(main, ["world", "dynamics", "--preset", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown dynamics preset" in r.output
