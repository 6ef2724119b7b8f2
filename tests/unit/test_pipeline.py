"""rag.pipeline: one path from reader settings to answers, shared by `rag ask` and the evaluation runner."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.errors import BadInputError
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from rag.pipeline import Pipeline, ReaderConfig, demonstrations, prompt_format, retrieve
from rag.readers import BUILTIN_DEMOS
from rag.readers.fake import FakeReader
from rag.types import Passage, Question
from tests.unit.test_eval_run import KNOWN, world, write_config  # noqa: F401 (fixture)

QS = [Question("a", "what is the capital of norway", ("Oslo",)), Question("b", "which planet is the fourth from the sun", ("Mars",))]
P = [Passage("Oslo#0", "Oslo", "Oslo", "Oslo is the capital of Norway. It lies on a fjord."),
     Passage("Mars#0", "Mars", "Mars", "Mars is the fourth planet. It is red.")]


def fake_cfg(**kw) -> ReaderConfig:
    return ReaderConfig(model="fake", backend="fake", shots=2, options={"known": KNOWN}, **kw)


def test_closed_book_is_the_same_call_with_no_passages():
    pipe = Pipeline.open(fake_cfg())
    assert isinstance(pipe.reader, FakeReader) and pipe.fmt.name == "kandpal" and len(pipe.demos) == 2
    closed = pipe.answer(QS)
    assert closed == pipe.read(QS, None) == pipe.answer(QS, [[], []])
    assert [p.answer for p in closed] == ["Bergen", "Mars"] and all(p.passages == () for p in closed)
    rag = pipe.answer(QS, [P, P[::-1]])
    assert [p.answer for p in rag] == ["Oslo", "Mars"]  # the fake reader reads the top passage's title
    prompts = pipe.reader.calls
    assert "Passage: " not in prompts[0][0] and prompts[-1][0].count("Passage: ") == 2 + 2  # demos' own + k


def test_show_takes_top_k_and_narrows_to_sentences():
    pipe = Pipeline.open(fake_cfg(sentences=1), k=1)
    (shown,) = pipe.show(QS[:1], [P])
    assert [p.pid for p in shown] == ["Oslo#0"] and shown[0].text == "Oslo is the capital of Norway."
    assert pipe.show(QS, None) is None
    assert all(d.passage is None or d.passage.text.count(". ") == 0 for d in pipe.demos)  # demos narrowed the same way


def test_a_ray_driver_pipeline_has_no_reader_until_bound():
    pipe = Pipeline.open(fake_cfg(), open_model=False)
    with pytest.raises(RuntimeError, match="no reader"):
        pipe.read(QS, None)
    bound = pipe.with_reader(FakeReader(known=KNOWN))
    assert [p.answer for p in bound.read(QS, None)] == ["Bergen", "Mars"] and pipe.reader is None


def test_demonstrations_and_format_rules(tmp_path):
    assert demonstrations(fake_cfg()) == list(BUILTIN_DEMOS[:2])
    with pytest.raises(BadInputError, match="built-in demonstrations"):
        demonstrations(ReaderConfig(model="fake", backend="fake", shots=len(BUILTIN_DEMOS) + 1))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"question": f"question {i}", "answer": [f"a{i}"]}) + "\n" for i in range(6)))
    drawn = demonstrations(ReaderConfig(model="fake", backend="fake", shots=3, demos=pool), seed=1)
    assert len(drawn) == 3 and drawn == demonstrations(ReaderConfig(model="fake", backend="fake", shots=3, demos=pool), seed=1)
    assert prompt_format(ReaderConfig(model="smollm2-135m")).name == "instruct"  # the named model's measured default
    assert prompt_format(ReaderConfig(model="x.gguf", prompt_format="passages-first")).name == "passages-first"


def test_ask_and_the_runner_answer_through_the_pipeline(world, tmp_path, monkeypatch):  # noqa: F811
    """The same question, passages and settings give the same prompt in `rag ask` and in an evaluation run."""
    seen: list[tuple[str, tuple]] = []
    real_read = Pipeline.read

    def spy(self, questions, shown):
        preds = real_read(self, questions, shown)
        for q, p in zip(questions, preds):
            seen.append((q.question, p.passages, p.prompt_tokens, p.answer))
        return preds

    monkeypatch.setattr(Pipeline, "read", spy)
    cfg = load_config(write_config(world, tmp_path / "run"))
    run_eval(cfg, progress=False)
    from_run = {(q, bool(pids)): (pids, n, a) for q, pids, n, a in seen}
    assert len(from_run) == 24
    seen.clear()
    r = CliRunner().invoke(main, ["ask", "what is the capital of norway", "--mode", "both", "--index", str(world / "bm25"),
                                  "-k", "2", "--backend", "fake", "--model", "fake", "--shots", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(seen) == 2  # closed-book and rag: both through Pipeline.read
    for q, pids, n, a in seen:
        assert from_run[(q, bool(pids))][:2] == (pids, n)  # same passages shown, same prompt length
    assert out["rag"]["answer"] == "Oslo" and out["closed"]["prompt_tokens"] == from_run[(QS[0].question, False)][1]


def test_retrieve_reads_passages_in_one_batch(world):  # noqa: F811
    from rag.retrievers import load_index

    index = load_index(world / "bm25")
    got = retrieve(index, [QS[0].question, "kuiper belt dwarf planet"], 3)
    assert [r.hits[0].pid for r in got] == ["Oslo#0", "Pluto#0"]
    assert all(len(r.hits) == len(r.passages) and [h.pid for h in r.hits] == [p.pid for p in r.passages] for r in got)
