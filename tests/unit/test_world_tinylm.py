"""The tiny LM: tokenizer, deterministic training, the tiny-lm reader (closed-book and with passages through
answer()), batched generation with left padding, target log-probabilities, and refusals."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from rag.errors import ArtifactError, BadInputError  # noqa: E402
from rag.world.tinylm import TinyConfig, TinyLM, TinyLMReader, TrainConfig, WordTokenizer, train_model  # noqa: E402

FACTS = [("Bravek Olun", "Tessary"), ("Mirel Dask", "Vonhale"), ("Quor Tembi", "Sallowin")]
DOCS = [f"{p} was born in {c}.\nQ: Where was {p} born?\nA: {c}" for p, c in FACTS] * 4
SMALL = TinyConfig(n_layer=2, n_head=2, d_model=48, block_size=48)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    train_model(DOCS, out, model_cfg=SMALL, train_cfg=TrainConfig(steps=250, batch_size=8, lr=1e-2, warmup=10, threads=1),
                progress=False, vocab_texts=["Passage: unseen words here"])
    return out


def test_tokenizer_round_trip_and_unknown_words():
    tok = WordTokenizer.build(["Q: Where was Bravek Olun born?\nA: Tessary", "a, b."])
    text = "Q: Where was Bravek Olun born?\nA: Tessary"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("Zzyzx")[0] == 1  # <unk>
    assert tok.tokens[:4] == ["<pad>", "<unk>", "<bos>", "\n"]
    with pytest.raises(ArtifactError):
        WordTokenizer(["a", "b"])


def test_training_writes_an_artifact_and_is_deterministic(tmp_path, model_dir):
    m = TinyLM(model_dir).manifest
    assert m["kind"] == "model/tiny-lm" and m["n_params"] > 0 and m["training"]["steps"] == 250
    assert m["training"]["final_loss"] < m["training"]["loss_curve"][0][1]
    cfg = TrainConfig(steps=3, batch_size=2, threads=1)
    train_model(DOCS, tmp_path / "a", model_cfg=SMALL, train_cfg=cfg, progress=False)
    train_model(DOCS, tmp_path / "b", model_cfg=SMALL, train_cfg=cfg, progress=False)
    assert (tmp_path / "a" / "weights.safetensors").read_bytes() == (tmp_path / "b" / "weights.safetensors").read_bytes()


def test_reader_answers_memorized_facts_closed_book_and_with_passages(model_dir):
    from rag.readers import READERS, answer
    from rag.readers.prompts import Demo
    from rag.types import Passage, Question

    reader = READERS.get("tiny-lm").load(str(model_dir))
    assert reader.n_ctx == SMALL.block_size and reader.n_params > 0
    qs = [Question(f"q{i}", f"Where was {p} born?", (c,)) for i, (p, c) in enumerate(FACTS)]
    preds = answer(reader, qs, None, demos=[], max_new_tokens=4)
    assert [p.answer for p in preds] == [c for _, c in FACTS]
    # with a passage the same code path runs (the passage may be cut to fit the 48-token context)
    ps = [[Passage("d#0", "d", p, f"{p} was born in {c}.")] for p, c in FACTS]
    preds = answer(reader, qs, ps, demos=[Demo("Where was Mirel Dask born?", "Vonhale")], max_new_tokens=4)
    assert all(pr.prompt_tokens <= reader.n_ctx for pr in preds)


def test_batched_generation_equals_one_at_a_time(model_dir):
    reader = TinyLMReader.load(str(model_dir))
    prompts = ["Q: Where was Bravek Olun born?\nA:", "Mirel Dask was born in", "Q: Where was Quor Tembi born?\nA:"]
    together = reader.generate_batch(prompts, 4)
    alone = [reader.generate_batch([p], 4)[0] for p in prompts]
    assert together == alone
    assert reader.count_tokens(["Q: Where"]) == [4]  # <bos> Q : Where


def test_target_logprobs_prefer_the_trained_fact(model_dir):
    lm = TinyLM(model_dir)
    (good, n, _), (bad, _, _) = lm.target_logprobs(["Bravek Olun was born in"] * 2, ["Tessary", "Vonhale"])
    assert n == 1 and good > bad
    q = "Q: Where was Bravek Olun born?\nA:"
    (_, _, em), (_, _, em_bad) = lm.target_logprobs([q, q], ["Tessary", "Vonhale"])
    assert em and not em_bad
    (lp2, n2, _), = lm.target_logprobs(["The founder was"], ["Bravek Olun"])
    assert n2 == 2 and lp2 < 0


def test_refusals(tmp_path, model_dir):
    with pytest.raises(BadInputError):
        TrainConfig(steps=0).check()
    with pytest.raises(BadInputError, match="fewer than one training window"):
        train_model(["tiny"], tmp_path / "x", model_cfg=SMALL, train_cfg=TrainConfig(steps=1, threads=1), progress=False)
    with pytest.raises(ArtifactError):
        TinyLM(tmp_path / "nope")
    with pytest.raises(BadInputError, match="no option"):
        TinyLMReader.load(str(model_dir), temperature=0.7)


def test_identity_vectors_are_fixed_saved_and_optional(tmp_path):
    from dataclasses import replace

    from safetensors.torch import load_file

    with_id = replace(SMALL, identity_std=0.1)
    for name, seed in (("a", 0), ("b", 1)):
        train_model(DOCS, tmp_path / name, model_cfg=with_id, train_cfg=TrainConfig(steps=2, batch_size=2, seed=seed, threads=1), progress=False)
    a, b = (load_file(str(tmp_path / n / "weights.safetensors")) for n in ("a", "b"))
    assert torch.equal(a["ident"], b["ident"])  # fixed, not trained, and not drawn from the training seed
    assert not torch.equal(a["tok.weight"], b["tok.weight"])
    assert abs(float(a["ident"].std()) - 0.1) < 0.02
    assert TinyLM(tmp_path / "a").cfg.identity_std == 0.1  # rebuilt from the manifest, the buffer loads
    train_model(DOCS, tmp_path / "c", model_cfg=replace(SMALL, identity_std=0.0), train_cfg=TrainConfig(steps=2, batch_size=2, threads=1), progress=False)
    assert "ident" not in load_file(str(tmp_path / "c" / "weights.safetensors"))
