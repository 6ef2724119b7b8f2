"""The torch reader on a tiny random-weight Llama built here (no download): the cached few-shot prefix gives the
logits of a full forward, batched decoding answers as one-by-one does, rows stop at their newline, scoring
matches a plain forward's log-probabilities."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from rag.readers import READERS, load_reader  # noqa: E402
from rag.readers.kv_prefix import PrefixCache, common_prefix_len  # noqa: E402
from rag.readers.torch_reader import TorchReader  # noqa: E402

DEMOS = "Q: who wrote pride and prejudice\nA: Jane Austen\n\nQ: what is the capital of australia\nA: Canberra\n\n"
QUESTIONS = ["who painted the mona lisa", "what is the symbol for gold", "which planet is red",
             "who was the first president of the united states of america", "how many players in football"]


def byte_tokenizer():
    """A byte-level tokenizer without merges: one token per byte ("\\n" is a token), plus <eos>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<eos>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<eos>", eos_token="<eos>", pad_token="<eos>")


def tiny_model(vocab: int):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2, tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def parts():
    tok = byte_tokenizer()
    return tok, tiny_model(len(tok))


def make(parts, precision="fp32", **kw) -> TorchReader:
    tok, model = parts
    import copy

    return TorchReader(tok, copy.deepcopy(model), precision=precision, device="cpu", **kw)


def prompts(n=len(QUESTIONS)):
    return [f"{DEMOS}Q: {q}\nA:" for q in QUESTIONS[:n]]


def full_logits(reader, text):
    ids = torch.tensor([reader._encode([text])[0]])
    with torch.inference_mode():
        return reader.model(input_ids=ids).logits[0].float()


def test_registered_and_loadable_by_name():
    assert READERS.get("torch") is TorchReader


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_len([[1, 2], [3]]) == 0
    assert common_prefix_len([[5, 6]]) == 2
    assert common_prefix_len([]) == 0


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("bf16", 0.15)])
def test_prefix_reuse_gives_the_logits_of_a_full_forward(parts, precision, tol):
    reader = make(parts, precision)
    texts = prompts()
    rows = reader._encode(texts)
    p = common_prefix_len(rows)
    assert p >= len(reader._encode([DEMOS])[0]) - 1  # the demonstrations are the shared prefix
    keep = min(len(r) for r in rows) - p  # every suffix position of the shortest row
    with torch.inference_mode():
        reader._prefill(rows, keep=1)  # fills the cache
        assert reader.prefix_cache.computed == p
        logits, *_ = reader._prefill(rows, keep=keep)  # prefix served from the cache
        assert reader.prefix_cache.computed == p and reader.prefix_cache.hits >= p
    for b, text in enumerate(texts):
        ref = full_logits(reader, text)[-keep:]
        diff = (logits[b] - ref).abs().max().item()
        assert diff < tol * max(1.0, ref.abs().max().item()), (precision, b, diff)
        if precision == "fp32":
            assert torch.equal(logits[b].argmax(-1), ref.argmax(-1))


def test_prefix_is_reused_across_calls_and_sliced(parts):
    reader = make(parts)
    reader.generate_batch(prompts(3), max_new_tokens=2)
    computed = reader.prefix_cache.computed
    assert computed > 0
    reader.generate_batch(prompts()[3:], max_new_tokens=2)
    assert reader.prefix_cache.computed == computed  # the demonstrations were not computed again
    # a single prompt caches all but its last token; a later prompt sharing only the demos slices that entry
    one = make(parts)
    one.generate_batch(prompts(1), max_new_tokens=2)
    first = one.prefix_cache.computed
    one.generate_batch(prompts()[1:2], max_new_tokens=2)
    shared = common_prefix_len(one._encode(prompts(2)))
    assert one.prefix_cache.computed - first == len(one._encode(prompts()[1:2])[0]) - 1 - shared


def test_batched_decoding_answers_as_one_by_one(parts):
    reader = make(parts, batch_size=2)  # several length-sorted micro-batches
    texts = prompts() + ["Q: an unrelated prompt with no shared prefix\nA:"]
    batched = reader.generate_batch(texts, max_new_tokens=8)
    single = [make(parts).generate_batch([t], max_new_tokens=8)[0] for t in texts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in single]
    assert [g.prompt_tokens for g in batched] == reader.count_tokens(texts)


def test_rows_stop_at_their_newline_and_leave_the_batch(parts):
    reader = make(parts)
    texts = prompts()
    rows = reader._encode(texts)
    with torch.inference_mode():
        free, _ = reader._greedy(rows, 8, [[] for _ in rows])
    assert all(len(r) == 8 for r in free)
    # declare row 0's third token a newline: row 0 stops there, rows without that token run on unchanged
    stop = free[0][2]
    reader._newline_ids = {stop}
    with torch.inference_mode():
        cut, _ = reader._greedy(rows, 8, [[] for _ in rows])
    for r, c in zip(free, cut):
        expect = r[: r.index(stop) + 1] if stop in r else r
        assert c == expect


def test_score_batch_matches_a_full_forward(parts):
    reader = make(parts, batch_size=4)
    texts = prompts()
    conts = [" Leonardo", " Au", " Mars", " George Washington", " eleven"]
    reader.generate_batch(texts, max_new_tokens=1)  # prefix in the cache
    scores = reader.score_batch(texts, conts)
    for text, cont, s in zip(texts, conts, scores):
        full = reader._encode([text + cont])[0]
        start = len(reader._encode([text])[0])
        logp = torch.log_softmax(full_logits(reader, text + cont), -1)
        ref = [logp[i - 1, full[i]].item() for i in range(start, len(full))]
        assert len(s.token_logprobs) == len(ref) == len(cont)  # one byte, one token
        assert s.token_logprobs == pytest.approx(ref, abs=1e-4)
        assert "".join(s.tokens) == cont and s.logprob == pytest.approx(sum(ref), abs=1e-3)


def test_prefix_cache_lru_and_subsumed_entries():
    cache = PrefixCache(max_entries=2)
    t = torch.zeros(1, 1, 5, 2)
    cache.put([1, 2], [(t[:, :, :2], t[:, :, :2])])
    cache.put([1, 2, 3], [(t[:, :, :3], t[:, :, :3])])  # the shorter entry is a prefix of it: dropped
    assert len(cache) == 1
    m, layers = cache.longest_match([1, 2, 9])
    assert m == 2 and layers[0][0].shape[2] == 2
    cache.put([7], [(t[:, :, :1], t[:, :, :1])])
    cache.put([8], [(t[:, :, :1], t[:, :, :1])])
    assert len(cache) == 2 and cache.longest_match([1, 2])[0] == 0  # least recently used went first


def test_bad_options(parts):
    from rag.errors import BadInputError

    with pytest.raises(BadInputError, match="fp16 needs a CUDA"):
        make(parts, "fp16")
    with pytest.raises(BadInputError, match="precision"):
        make(parts, "int3")
    with pytest.raises(BadInputError, match="list of prompts"):
        make(parts).generate_batch("a string", 4)


def test_load_reader_passes_precision(parts, monkeypatch):
    import rag.readers.transformers as hf

    tok, model = parts
    import copy

    monkeypatch.setattr(hf, "open_model", lambda name, gguf_file=None, dtype="float32": (tok, copy.deepcopy(model), None))
    reader = load_reader("some/model", backend="torch", precision="bf16", device="cpu")
    assert reader.precision == "bf16" and next(reader.model.parameters()).dtype == torch.bfloat16
    assert reader.prompt_format == "kandpal" and reader.backend == "torch"


def test_any_special_token_ends_an_answer(parts):
    """Qwen's instruct models end an answer with <|endoftext|>, a special token that is not their EOS: every
    special token stops a row (as llama.cpp stops at every end-of-generation token), and none is decoded."""
    import copy

    tok, model = parts
    tok = copy.deepcopy(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    sid = tok.convert_tokens_to_ids("<|endoftext|>")
    model = copy.deepcopy(model)
    model.resize_token_embeddings(len(tok))
    reader = TorchReader(tok, model, precision="fp32", device="cpu")
    assert sid in reader._stop_ids and tok.eos_token_id in reader._stop_ids
    (free,) = reader.generate_batch([prompts(1)[0]], max_new_tokens=8)
    calls = [0]
    forward = reader._forward

    def forced(*a, **k):  # the third model call computes the second answer token: make it <|endoftext|>
        logits, cache = forward(*a, **k)
        calls[0] += 1
        if calls[0] == 3:
            logits[..., sid] = 1e4
        return logits, cache

    reader.prefix_cache.clear()
    reader._forward = forced
    (g,) = reader.generate_batch([prompts(1)[0]], max_new_tokens=8)
    assert g.new_tokens == 1 and free.new_tokens > 1 and "endoftext" not in g.text
