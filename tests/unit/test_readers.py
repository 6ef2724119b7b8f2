"""The reader interface, the backend registry and `answer` (closed-book and RAG) with the fake reader."""
from __future__ import annotations

import subprocess
import sys

import pytest

from rag.errors import BadInputError
from rag.readers import BUILTIN_DEMOS, READERS, answer, load_reader
from rag.readers.base import Generation, first_line
from rag.readers.fake import FakeReader
from rag.types import Passage, Prediction, Question

QS = [Question("q0", "who wrote hamlet", ("Shakespeare",)), Question("q1", "where is oslo", ("Norway",))]


def test_registry_has_builtin_backends_and_lists_choices():
    assert {"llama-cpp", "transformers", "openai", "vllm", "fake"} <= set(READERS)
    with pytest.raises(BadInputError, match="unknown reader backend 'nonesuch'; choose one of: ") as e:
        load_reader("x", backend="nonesuch")
    assert all(name in str(e.value) for name in ("fake", "llama-cpp", "openai", "transformers", "vllm"))


def test_single_form_is_derived_from_the_batch_method():
    r = FakeReader(known={"who wrote hamlet": "Shakespeare"})
    g = r.generate("Q: who wrote hamlet\nA:")
    assert g == Generation("Shakespeare", 6, 2) and r.calls == [["Q: who wrote hamlet\nA:"]]
    with pytest.raises(BadInputError, match="not a single string"):
        r.generate_batch("Q: x\nA:")
    with pytest.raises(BadInputError, match="max_new_tokens must be a positive integer"):
        r.generate_batch(["Q: x\nA:"], 0)


def test_first_line():
    assert first_line("  Paris \nQ: next") == "Paris"
    assert first_line("\nParis") == ""
    assert first_line("") == ""


def test_closed_book_is_the_same_call_with_zero_passages():
    r = FakeReader(known={"who wrote hamlet": "Shakespeare"})
    closed = answer(r, QS)
    assert closed == answer(r, QS, [[], []])
    assert [p.answer for p in closed] == ["Shakespeare", "unknown"]
    assert all(p.passages == () and p.passages_dropped == 0 for p in closed)
    assert r.calls[0][0].startswith("Q: who wrote the novel pride and prejudice\nA: Jane Austen\n\n")


def test_rag_answers_from_passages_and_records_them():
    r = FakeReader()
    ps = [[Passage("a#0", "a", "William Shakespeare", "Hamlet is by him.")], [Passage("n#2", "n", "Norway", "Oslo is the capital.")]]
    preds = answer(r, QS, ps, demos=BUILTIN_DEMOS[:2])
    assert [p.answer for p in preds] == ["William Shakespeare", "Norway"]
    assert preds[1] == Prediction("q1", "Norway", preds[1].prompt_tokens, ("n#2",), 2, 0, 0)
    assert preds[1].prompt_tokens == r.count_tokens([r.calls[0][1]])[0]
    # mixed: one question closed-book, one with passages, in one call
    mixed = answer(r, QS, [[], ps[1]])
    assert mixed[0].passages == () and mixed[1].passages == ("n#2",)


def test_fitting_counts_reach_the_predictions():
    long = [Passage(f"p#{i}", "p", f"T{i}", " ".join(["word"] * 90)) for i in range(3)]
    # ~45 tokens of demonstration and question, ~93 per passage
    (fits,) = answer(FakeReader(n_ctx=400), QS[:1], [long], demos=BUILTIN_DEMOS[:1], max_new_tokens=8)
    assert (fits.passages_dropped, fits.passages_truncated, len(fits.passages)) == (0, 0, 3)
    (cut,) = answer(FakeReader(n_ctx=260), QS[:1], [long], demos=BUILTIN_DEMOS[:1], max_new_tokens=8)
    assert (cut.passages_dropped, cut.passages_truncated, len(cut.passages)) == (0, 1, 3)
    (pred,) = answer(FakeReader(n_ctx=200), QS[:1], [long], demos=BUILTIN_DEMOS[:1], max_new_tokens=8)
    assert (pred.passages_dropped, pred.passages_truncated, pred.passages) == (1, 1, ("p#0", "p#1"))
    assert pred.prompt_tokens <= 200 - 8


def test_batches_follow_batch_size_and_keep_order():
    r = FakeReader()
    qs = [Question(f"q{i}", f"question {i}", ("a",)) for i in range(5)]
    preds = answer(r, qs, batch_size=2)
    assert [len(c) for c in r.calls] == [2, 2, 1] and [p.qid for p in preds] == [q.qid for q in qs]


def test_bad_input():
    r = FakeReader()
    with pytest.raises(BadInputError, match="question 'e' is empty"):
        answer(r, [Question("e", "   ", ())])
    with pytest.raises(BadInputError, match="2 questions but 1 passage lists"):
        answer(r, QS, [[]])
    with pytest.raises(BadInputError, match="unknown prompt format"):
        answer(r, QS, prompt_format="chat")


def test_importing_readers_loads_no_heavy_library():
    code = "import sys, rag.readers, rag.metrics, rag.qa; print([m for m in ('llama_cpp', 'torch', 'transformers', 'httpx', 'vllm') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_prompt_format_defaults_to_the_readers_setting():
    r = FakeReader()
    answer(r, QS[:1])
    assert r.calls[-1][0].startswith("Q: ")
    r.prompt_format = "instruct"  # what a named model's loader sets
    answer(r, QS[:1])
    assert r.calls[-1][0].startswith("Answer each question")
    answer(r, QS[:1], prompt_format="kandpal")
    assert r.calls[-1][0].startswith("Q: ")


def test_named_models_default_formats_exist():
    from rag.readers import FORMATS, NAMED_MODELS, default_format

    assert all(m.prompt_format in FORMATS for m in NAMED_MODELS.values())
    assert default_format("smollm2-135m") == NAMED_MODELS["smollm2-135m"].prompt_format
    assert default_format("/some/model.gguf") == "kandpal"
