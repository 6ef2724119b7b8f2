"""Prompt rendering, demonstration drawing and fitting prompts to the context (with the fake reader)."""
from __future__ import annotations

import pytest

from rag.errors import BadInputError
from rag.readers.fake import FakeReader
from rag.readers.prompts import BUILTIN_DEMOS, FORMATS, Demo, draw_demos, fit_prompt
from rag.types import Hit, Passage, Question

DEMOS = [Demo("who wrote hamlet", "Shakespeare", Passage("h#0", "h", "Hamlet", "Hamlet is a tragedy by Shakespeare.")),
         Demo("capital of france", "Paris", Passage("f#0", "f", "France", "Its capital is Paris."))]
P1 = Passage("a#0", "a", "Alpha", "alpha text\nwith a newline")
P2 = Passage("b#3", "b", "Beta", "beta text")


def test_closed_book_is_kandpal_q_a_lines():
    text = FORMATS.get("kandpal").render(DEMOS, "who painted it", [])
    assert text == (
        "Q: who wrote hamlet\nA: Shakespeare\n\n"
        "Q: capital of france\nA: Paris\n\n"
        "Q: who painted it\nA:"
    )


def test_rag_prompt_gives_each_demo_its_passage_then_topk_then_question():
    text = FORMATS.get("kandpal").render(DEMOS, "who painted it", [P1, P2])
    assert text == (
        "Passage: Hamlet: Hamlet is a tragedy by Shakespeare.\nQ: who wrote hamlet\nA: Shakespeare\n\n"
        "Passage: France: Its capital is Paris.\nQ: capital of france\nA: Paris\n\n"
        "Passage: Alpha: alpha text with a newline\n"  # newlines inside a passage are collapsed
        "Passage: Beta: beta text\n"
        "Q: who painted it\nA:"
    )


def test_other_formats():
    pf = FORMATS.get("passages-first").render(DEMOS, "q?", [P2])
    assert pf == "Passage: Beta: beta text\n\nQ: who wrote hamlet\nA: Shakespeare\n\nQ: capital of france\nA: Paris\n\nQ: q?\nA:"
    ins = FORMATS.get("instruct").render(DEMOS[:1], "q?", [])
    assert ins.startswith("Answer each question") and ins.endswith("Q: who wrote hamlet\nA: Shakespeare\n\nQ: q?\nA:")
    with pytest.raises(BadInputError, match="unknown prompt format 'nope'; choose one of: instruct, kandpal, kandpal-best-last, passages-first"):
        FORMATS.get("nope")


def test_builtin_demos_have_passages_holding_their_answers():
    from rag.metrics import has_answer

    assert len(BUILTIN_DEMOS) >= 5
    for d in BUILTIN_DEMOS:
        assert d.passage is not None and has_answer([d.answer], d.passage.text), d


# --- fitting ------------------------------------------------------------------------------------------


def words(n, tag="w"):
    return " ".join(f"{tag}{i}" for i in range(n))


def test_fit_keeps_everything_when_it_fits():
    r = FakeReader(n_ctx=500)
    f = fit_prompt(r, FORMATS.get("kandpal"), DEMOS, "q?", [P1, P2], max_new_tokens=10)
    assert f.passages == (P1, P2) and f.n_dropped == 0 and f.n_truncated == 0
    assert f.n_tokens == r.count_tokens([f.text])[0]


def test_fit_truncates_then_drops_last_passages_first():
    fmt = FORMATS.get("kandpal")
    ps = [Passage(f"p#{i}", "p", f"T{i}", words(100, f"p{i}_")) for i in range(4)]
    base = FakeReader().count_tokens([fmt.render(DEMOS, "q?", [], rag=True)])[0]
    # room for the bare prompt, one full passage (~103 tokens) and half of the second
    r = FakeReader(n_ctx=base + 103 + 50 + 16)
    f = fit_prompt(r, fmt, DEMOS, "q?", ps, max_new_tokens=16)
    assert f.n_tokens <= r.n_ctx - 16
    assert [p.pid for p in f.passages] == ["p#0", "p#1"]
    assert f.passages[0] == ps[0] and f.passages[1].text.endswith(" ...") and len(f.passages[1].text) < len(ps[1].text)
    assert f.n_dropped == 2 and f.n_truncated == 1


def test_best_last_puts_the_top_passage_nearest_the_question_and_still_drops_the_worst():
    fmt = FORMATS.get("kandpal-best-last")
    ps = [Passage(f"p#{i}", "p", f"T{i}", words(100, f"p{i}_")) for i in range(3)]
    text = fmt.render(DEMOS, "q?", ps)
    assert text.index("T2:") < text.index("T1:") < text.index("T0:") < text.index("Q: q?")
    assert text.replace("T0:", "").count("Passage:") == FORMATS.get("kandpal").render(DEMOS, "q?", ps).count("Passage:")
    base = FakeReader().count_tokens([fmt.render(DEMOS, "q?", [], rag=True)])[0]
    f = fit_prompt(FakeReader(n_ctx=base + 103 + 103 + 3 + 16), fmt, DEMOS, "q?", ps, max_new_tokens=16)
    assert [p.pid for p in f.passages] == ["p#0", "p#1"]  # rank order kept: the worst one went
    assert f.text.index("T1:") < f.text.index("T0:") < f.text.index("Q: q?") and "T2:" not in f.text


def test_fit_drops_when_too_little_room_to_truncate():
    fmt = FORMATS.get("kandpal")
    ps = [Passage("p#0", "p", "T", words(100))]
    base = FakeReader().count_tokens([fmt.render(DEMOS, "q?", [], rag=True)])[0]
    r = FakeReader(n_ctx=base + 5 + 16)  # 5 tokens of room: less than MIN_PASSAGE_TOKENS
    f = fit_prompt(r, fmt, DEMOS, "q?", ps, max_new_tokens=16)
    assert f.passages == () and f.n_dropped == 1 and f.n_truncated == 0
    assert "Passage: Hamlet" in f.text  # still the RAG layout: demonstrations keep their passages


def test_prompt_too_long_without_passages_is_a_clear_error():
    r = FakeReader(n_ctx=20)
    with pytest.raises(BadInputError, match=r"even without passages.*n_ctx 20 - max_new_tokens 16.*fewer shots"):
        fit_prompt(r, FORMATS.get("kandpal"), DEMOS, "q?", [P1], max_new_tokens=16)
    with pytest.raises(BadInputError, match="even without passages"):
        fit_prompt(r, FORMATS.get("kandpal"), DEMOS, "q?", [], max_new_tokens=16)


# --- demonstrations -----------------------------------------------------------------------------------

POOL = [Question(f"pool-{i}", f"question number {i}", (f"ans{i}",)) for i in range(50)]


def test_draw_demos_is_seeded_and_excludes_evaluated_questions():
    a = draw_demos(POOL, 4, seed=1)
    assert a == draw_demos(POOL, 4, seed=1) and a != draw_demos(POOL, 4, seed=2)
    assert [d.answer for d in a] == [f"ans{d.qid.split('-')[1]}" for d in a]
    evaluated = POOL[:45] + [Question("other-1", "Question Number 46?", ("x",))]  # same text, other id
    drawn = draw_demos(POOL, 4, seed=0, exclude=evaluated)
    assert {d.qid for d in drawn} <= {"pool-45", "pool-47", "pool-48", "pool-49"}
    assert draw_demos(POOL, 0) == []
    with pytest.raises(BadInputError, match="only 4 usable questions for 5 shots"):
        draw_demos(POOL, 5, seed=0, exclude=evaluated)


class TinyRetriever:
    """search_batch/passages over a dict question -> passages (no index needed)."""

    def __init__(self, by_question):
        self.by_question = by_question
        self.rows = []

    def search_batch(self, queries, k):
        out = []
        for q in queries:
            hits = []
            for p in self.by_question.get(q, [])[:k]:
                self.rows.append(p)
                hits.append(Hit(p.pid, 1.0, len(hits) + 1, len(self.rows) - 1))
            out.append(hits)
        return out

    def passages(self, hits):
        return [self.rows[h.row] for h in hits]


def test_draw_demos_with_retriever_picks_answer_bearing_passages():
    pool = [Question("p-0", "who built it", ("Bob Smith", "Smith")), Question("p-1", "no passage has it", ("zzz",)),
            Question("p-2", "where is it", ("Oslo",))]
    retriever = TinyRetriever({
        "who built it": [Passage("x#0", "x", "X", "nothing here"), Passage("x#1", "x", "X", "It was built by Smith in 1900.")],
        "no passage has it": [Passage("y#0", "y", "Y", "unrelated")],
        "where is it": [Passage("z#0", "z", "Oslo", "The city of Oslo.")],
    })
    demos = draw_demos(pool, 2, seed=0, retriever=retriever)
    by_id = {d.qid: d for d in demos}
    assert set(by_id) == {"p-0", "p-2"}  # p-1 has no passage with its answer
    assert by_id["p-0"].passage.pid == "x#1" and by_id["p-0"].answer == "Smith"  # the alias the passage holds
    with pytest.raises(BadInputError, match="without a retrieved passage holding the answer"):
        draw_demos(pool, 3, seed=0, retriever=retriever)
