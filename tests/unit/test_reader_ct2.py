"""The ct2 (CTranslate2) reader on the tiny random Llama of test_reader_torch, converted here: in fp32 it
answers and scores as the torch reader does, batched as one-by-one, and reuses the shared prefix."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("ctranslate2")

from rag.readers import READERS  # noqa: E402
from rag.readers.ct2 import Ct2Reader, convert  # noqa: E402
from rag.readers.torch_reader import TorchReader  # noqa: E402

from tests.unit.test_reader_torch import byte_tokenizer, prompts, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import os

    base = tmp_path_factory.mktemp("ct2")
    os.environ["RAG_CACHE"] = str(base / "cache")  # the converted copy goes here (restored below)
    tok = byte_tokenizer()
    model = tiny_model(len(tok))
    src = base / "tiny-llama"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    try:
        yield src, tok, model, convert(str(src), "fp32")
    finally:
        os.environ.pop("RAG_CACHE", None)


def test_registered():
    assert READERS.get("ct2") is Ct2Reader


def test_fp32_answers_and_scores_as_torch(folder):
    src, tok, model, converted = folder
    assert (converted / "model.bin").exists() and convert(str(src), "fp32") == converted  # cached
    ct2 = Ct2Reader(converted, tok, precision="fp32", device="cpu", batch_size=2)
    ref = TorchReader(tok, model, precision="fp32", device="cpu")
    texts = prompts()
    ours = ct2.generate_batch(texts, max_new_tokens=6)
    theirs = ref.generate_batch(texts, max_new_tokens=6)
    assert [g.text for g in ours] == [g.text for g in theirs]
    assert [g.prompt_tokens for g in ours] == [g.prompt_tokens for g in theirs]
    assert ct2._static  # the demonstrations went in as a static prompt
    single = [ct2.generate_batch([t], max_new_tokens=6)[0].text for t in texts]
    assert single == [g.text for g in ours]
    assert len(ct2._static) == 1  # one-by-one calls reused it instead of adding entries
    conts = [" Leonardo", " Au", " Mars", " George", " eleven"]
    a, b = ct2.score_batch(texts, conts), ref.score_batch(texts, conts)
    for x, y in zip(a, b):
        assert x.tokens == y.tokens
        assert x.token_logprobs == pytest.approx(y.token_logprobs, abs=1e-3)


def test_int8_runs_and_bad_precision(folder):
    from rag.errors import BadInputError

    src, tok, _, _ = folder
    gens = Ct2Reader(convert(str(src)), tok, device="cpu").generate_batch(prompts(2), max_new_tokens=3)
    assert len(gens) == 2 and all(0 < g.new_tokens <= 3 for g in gens)
    with pytest.raises(BadInputError, match="precision"):
        Ct2Reader(convert(str(src)), tok, precision="int3", device="cpu")
