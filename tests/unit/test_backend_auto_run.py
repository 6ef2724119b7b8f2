"""backend "auto" in evaluation runs: resolved before the run identity, recorded in the manifest, and a resumed
run whose resolved backend or precision changed is refused."""
from __future__ import annotations

import json

import pytest

import rag.readers.auto as auto
from rag.errors import BadInputError
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from rag.pipeline import ReaderConfig, resolve_backend
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)


def choose(backend: str, precision: str):
    return lambda model, device="auto", **kw: auto.Choice(backend, precision, f"test: {backend} {precision}", {"cpu": "x"})


def test_resolve_backend_keeps_explicit_settings(monkeypatch):
    monkeypatch.setattr(auto, "choose_backend", choose("torch", "bf16"))
    cfg, choice = resolve_backend(ReaderConfig(model="org/m", backend="auto"))
    assert (cfg.backend, cfg.options, choice.precision) == ("torch", {"precision": "bf16"}, "bf16")
    cfg, _ = resolve_backend(ReaderConfig(model="org/m", backend="auto", options={"precision": "fp32"}))
    assert cfg.options == {"precision": "fp32"}  # the user's precision wins
    monkeypatch.setattr(auto, "choose_backend", choose("llama-cpp", "gguf"))
    cfg, _ = resolve_backend(ReaderConfig(model="org/m", backend="auto", options={"precision": "fp32"}))
    assert cfg.backend == "llama-cpp" and cfg.options == {}
    same = ReaderConfig(model="org/m", backend="fake")
    assert resolve_backend(same) == (same, None)


def test_auto_choice_is_recorded_and_a_changed_choice_refuses_resume(world, tmp_path, monkeypatch):  # noqa: F811
    path = write_config(world, tmp_path / "run", reader={"model": "org/m", "backend": "auto", "shots": 2})
    monkeypatch.setattr(auto, "choose_backend", choose("torch", "bf16"))
    run_eval(load_config(path), progress=False, reader=CountingReader())
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["backend_choice"]["backend"] == "torch" and manifest["backend_choice"]["precision"] == "bf16"
    assert manifest["identity"]["reader"]["backend"] == "torch"
    assert manifest["identity"]["reader"]["options"] == {"precision": "bf16"}
    res = run_eval(load_config(path), progress=False, reader=CountingReader())  # same machine: resumes
    assert res.reused == 24
    monkeypatch.setattr(auto, "choose_backend", choose("torch", "fp32"))  # another machine kind
    with pytest.raises(BadInputError, match=r"different settings \(reader.options.precision\)"):
        run_eval(load_config(path), progress=False, reader=CountingReader())
    monkeypatch.setattr(auto, "choose_backend", choose("llama-cpp", "gguf"))
    with pytest.raises(BadInputError, match=r"reader.backend"):
        run_eval(load_config(path), progress=False, reader=CountingReader())
