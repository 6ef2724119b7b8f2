"""`rag world inject` on a tiny world (every method, the report, reuse, export), the grown vocabulary, and
low-rank adapters merged exactly."""
from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from rag.world.generator import WorldParams, generate, read_jsonl, write_world  # noqa: E402
from rag.world.tinylm import TinyConfig, TinyLM, TrainConfig, make_model, train_model  # noqa: E402


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("inj")
    write_world(generate(WorldParams(n_people=16, n_orgs=5, n_cities=5, n_countries=3, max_count=60, n_distractor_docs=20,
                                     n_reading_docs=30)), root / "world")
    docs = [d["text"] for d in read_jsonl(root / "world" / "corpus.jsonl")]
    train_model(docs, root / "model", model_cfg=TinyConfig(n_layer=1, d_model=32, block_size=128),
                train_cfg=TrainConfig(steps=20, batch_size=4, threads=1), progress=False)
    return root


def test_inject_vs_retrieve_on_a_tiny_world(world_model, tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from rag.cli import main
    from rag.world.inject import METHODS

    out = tmp_path / "inject"
    args = ["world", "inject", "--world", str(world_model / "world"), "--model", str(world_model / "model"), "--out", str(out),
            "--people", "3", "--orgs", "2", "--heldout", "2", "--docs", "2", "--epochs", "3", "--threads", "1", "--no-progress"]
    r = CliRunner().invoke(main, [*args, "--export", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    assert "further training vs retrieval" in r.output
    s = json.loads((out / "inject.json").read_text())
    assert sorted(s["methods"]) == sorted(METHODS)
    for m, res in s["methods"].items():
        assert res["new"]["n"] == 3 * 2 + 2 * 3 and res["old"]["n"] > 0
        assert 0 <= res["new"]["em"] <= 1 and 0 <= res["old"]["em"] <= 1 and res["new"]["gold_logprob"] < 0
        assert 1 < res["perplexity"]["new_style_heldout"] < math.inf
    assert s["methods"]["retrieval"]["perplexity"] == s["methods"]["none"]["perplexity"]  # the same model, untrained
    assert json.loads((out / "results" / "retrieval.json").read_text())["model"] == "model-base"

    # the grown vocabulary reads every new name; training moved weights, the adapter run only its own rows
    base = TinyLM(out / "model-base")
    items = read_jsonl(out / "knowledge" / "items.jsonl")
    assert all(1 not in base.tok.encode(it["name"] + " " + it["twin"]) for it in items)
    src_vocab = len(TinyLM(world_model / "model").tok)
    assert len(base.tok) > src_vocab
    w = {n: load_file(str(out / n / "weights.safetensors")) for n in ("model-base", "model-full", "model-lora")}
    assert not torch.equal(w["model-base"]["tok.weight"], w["model-full"]["tok.weight"])
    assert torch.equal(w["model-base"]["tok.weight"][:src_vocab], w["model-lora"]["tok.weight"][:src_vocab])
    assert not torch.equal(w["model-base"]["tok.weight"][src_vocab:], w["model-lora"]["tok.weight"][src_vocab:])
    assert not torch.equal(w["model-base"]["blocks.0.qkv.weight"], w["model-lora"]["blocks.0.qkv.weight"])
    assert torch.equal(w["model-base"]["ln.weight"], w["model-lora"]["ln.weight"])  # frozen outside the adapters
    assert set(w["model-lora"]) == set(w["model-base"])

    exported = {p.relative_to(tmp_path / "res").as_posix() for p in (tmp_path / "res").rglob("*") if p.is_file()}
    assert {"inject.json", "inject.md", "results/train-full.json", "knowledge-qa.jsonl"} <= exported
    assert not any(e.endswith(".safetensors") for e in exported)
    assert (out / "manifest.json").exists()

    # a rerun reuses everything; other settings in the same folder are refused
    before = (out / "results" / "train-full.json").read_bytes()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and (out / "results" / "train-full.json").read_bytes() == before
    r = CliRunner().invoke(main, [*args[:-5], "--epochs", "4", "--threads", "1", "--no-progress"])
    assert r.exit_code == 2 and "other settings" in r.output


def test_training_resumes_with_identical_weights(world_model, tmp_path):
    """A training run cut after a checkpoint (as kill -9 would) ends with the same weights as one never cut."""
    from rag.world import checkpoint
    from rag.world.inject import InjectConfig, run_inject

    cfg = InjectConfig(n_people=2, n_orgs=1, n_heldout=2, docs_per_entity=2, epochs=12, batch_size=2, checkpoint_every=2, lora=False)
    run_inject(cfg, world_model / "world", world_model / "model", tmp_path / "a", progress=False, threads=1)

    calls = {"n": 0}
    real_save = checkpoint.save

    def save_then_die(*a, **k):
        real_save(*a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # stands for the kill: nothing after the checkpoint is kept
    mp = pytest.MonkeyPatch()
    mp.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_inject(cfg, world_model / "world", world_model / "model", tmp_path / "b", progress=False, threads=1)
    mp.undo()
    assert (tmp_path / "b" / "work-model-full" / "ckpt" / "latest.json").exists()
    run_inject(cfg, world_model / "world", world_model / "model", tmp_path / "b", progress=False, threads=1)
    for f in ("model-full/weights.safetensors", "work-model-full/log.jsonl", "results/train-full.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_lora_merges_exactly_and_freezes_the_rest():
    from rag.world.lora import add_lora, merge_lora

    cfg = TinyConfig(n_layer=2, n_head=2, d_model=16, block_size=16)
    torch.manual_seed(0)
    model = make_model(cfg, 40)
    keys = set(model.state_dict())
    n = add_lora(model, rank=2, alpha=4.0, seed=1, train_rows=[38, 39])
    assert n == 2 * (2 * 16 + 48 * 2 + 2 * 16 + 16 * 2 + 2 * 16 + 64 * 2 + 2 * 64 + 16 * 2) + 2 * 16
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".A" in t or ".B" in t or t == "tok.weight" for t in trainable)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".B"):
                p.normal_(0, 0.5)  # a trained adapter is not zero
    idx = torch.randint(0, 40, (3, 12))
    with torch.no_grad():
        before = model(idx)
    emb = model.tok.weight
    loss = model(idx).mean()
    loss.backward()
    assert emb.grad[:38].abs().sum() == 0 and emb.grad[38:].abs().sum() > 0  # only the new rows move
    merge_lora(model)
    with torch.no_grad():
        after = model(idx)
    assert set(model.state_dict()) == keys
    assert torch.allclose(before, after, atol=1e-5)


def test_grown_vocabulary_keeps_every_old_weight():
    from rag.world.tinylm import WordTokenizer, grow_vocabulary

    cfg = TinyConfig(n_layer=1, n_head=2, d_model=16, block_size=16)
    tok = WordTokenizer.build(["Bravek Olun was born in Tessary."])
    model = make_model(cfg, len(tok))
    big, grown, new = grow_vocabulary(model, tok, cfg, ["Zyx Qor was born in Tessary.", "Bravek"])
    assert new == ["Qor", "Zyx"] and grown.tokens[: len(tok)] == tok.tokens and len(grown) == len(tok) + 2
    old, sd = model.state_dict(), big.state_dict()
    assert torch.equal(sd["tok.weight"][: len(tok)], old["tok.weight"]) and torch.equal(sd["ident"][: len(tok)], old["ident"])
    assert torch.allclose(sd["tok.weight"][len(tok):], old["tok.weight"].mean(0).expand(2, -1))
    assert not torch.equal(sd["ident"][-1], sd["ident"][-2])  # each new word its own identity
    assert all(torch.equal(sd[k], old[k]) for k in old if k not in ("tok.weight", "ident"))
