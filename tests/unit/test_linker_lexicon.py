"""Lexicon linker: longest matches on word boundaries, case rules, offsets, long texts, engines, registry."""
from __future__ import annotations

import numpy as np
import pytest

from rag.entities.lexicon import LexiconBuilder
from rag.entities.linkers import LINKERS, EntityLinker, LexiconLinker, make_linker
from rag.errors import ArtifactError, BadInputError


def _lexicon(stats: dict[str, tuple[int, int]] | None = None):
    b = LexiconBuilder()
    b.add_titles(["New York City", "New York", "York", "Paris", "Io (moon)", "United States", "Moon", "The Who",
                  "Washington, D.C.", "Brazil", "Amazon River", "Apple Inc.", "Dante Alighieri", "Theory of relativity",
                  "Big Ben", "Ben"])
    b.add_redirects([("US", "United States"), ("Io", "Io (moon)"), ("Apple", "Apple Inc."), ("in br", "Brazil"),
                     ("Dante", "Dante Alighieri"), ("NYC", "New York City")])
    lex = b.build()
    for form, (lo, up) in (stats or {}).items():
        i = lex.forms.index(form)
        lex.n_lower[i], lex.n_upper[i] = lo, up
    return lex


@pytest.fixture(scope="module")
def linker():
    return LexiconLinker(_lexicon({"moon": (30, 5), "apple": (40, 10)}))


def spans(linker, text):
    return [(text[m.start : m.end], m.entity) for m in linker.link(text)]


def test_longest_match_and_offsets(linker):
    text = "I flew to New York City, then to York."
    got = linker.link(text)
    assert [(m.start, m.end, m.entity) for m in got] == [(10, 23, "New York City"), (33, 37, "York")]
    assert all(text[m.start : m.end] == m.surface for m in got)
    assert got[0].score == pytest.approx(1.0)


def test_word_boundaries(linker):
    # no match inside words; a longer form ending mid-word does not shadow a later whole word
    assert spans(linker, "Yorkshire and Parisian cafés") == []
    assert spans(linker, "spoken in brazil") == [("brazil", "Brazil")]
    assert spans(linker, "Big Bend National Park") == []
    assert spans(linker, "Dante's poem") == [("Dante", "Dante Alighieri")]


def test_punctuation_and_spacing(linker):
    assert spans(linker, "He went to Washington, D.C. in May.") == [("Washington, D.C", "Washington, D.C.")]
    assert spans(linker, "New  York") == [("New  York", "New York")]


def test_no_match_across_lines(linker):
    # "York" is part of the name span "York City" on its line, so nothing links; without span rules it does
    assert spans(linker, "New\nYork City") == []
    flat = LexiconLinker(linker.lexicon, name_spans=False)
    assert spans(flat, "New\nYork City") == [("York", "York")]
    assert all(m.entity != "New York City" for m in flat.link("New\nYork City"))


def test_case_rules_in_cased_text(linker):
    # one-word forms need an upper-case letter; short ones need all caps (or the known spelling)
    assert spans(linker, "I ate an apple in Paris.") == [("Paris", "Paris")]
    assert spans(linker, "The US and us.") == [("US", "United States")]
    assert spans(linker, "Io is a moon of Jupiter.") == [("Io", "Io (moon)")]
    assert spans(linker, "IO and Io-like, not io") == [("IO", "Io (moon)"), ("Io", "Io (moon)")]
    # a common word: only capitalized off a sentence start
    assert spans(linker, "They saw the Moon rise.") == [("Moon", "Moon")]
    assert spans(linker, "Moon rises. the moon.") == []
    assert spans(linker, "Apple makes phones. We like Apple.") == [("Apple", "Apple Inc.")]
    # multi-word forms match in any case; a multi-word form of stopwords needs capitals
    assert spans(linker, "the theory of relativity") == [("theory of relativity", "Theory of relativity")]
    assert spans(linker, "We saw The Who and the who.") == [("The Who", "The Who")]


def test_uncased_text_rules(linker):
    # NQ questions are lower-cased: no case evidence, so common forms and short forms are not linked
    assert spans(linker, "where was dante born in paris") == [("dante", "Dante Alighieri"), ("paris", "Paris")]
    assert spans(linker, "who walked on the moon") == []
    assert spans(linker, "us io nyc") == []
    # case is judged per line: a lower-case line next to a cased line is uncased
    assert spans(linker, "Big Ben\nwhere is paris") == [("Big Ben", "Big Ben"), ("paris", "Paris")]


def test_ambiguous_form_below_threshold_not_linked():
    b = LexiconBuilder()
    b.add_titles(["Mercury (planet)", "Mercury (element)", "Venus"])
    lx = LexiconLinker(b.build())
    assert [m.entity for m in lx.link("Mercury and Venus")] == ["Venus"]


def test_batch_equals_single_and_entities(linker):
    texts = ["Paris and New York", "", "nothing here", "Dante in Paris\nBrazil"]
    batch = linker.link_batch(texts)
    assert batch == [linker.link(t) for t in texts]
    idx, ents = linker.link_entities(texts)
    assert [(int(i), linker.vocabulary[e]) for i, e in zip(idx, ents)] == [
        (t, m.entity) for t, ms in enumerate(batch) for m in ms
    ]


def test_unicode_offsets(linker):
    text = "Über 🎉 Paris — İstanbul 😀 Brazil"
    got = linker.link(text)
    assert [text[m.start : m.end] for m in got] == ["Paris", "Brazil"]


def test_very_long_text_is_windowed():
    lx = LexiconLinker(_lexicon(), max_chars=1000)
    unit = "Paris is far from Brazil. " * 10 + "\n"
    text = unit * 500  # ~130k characters, ~130 windows
    got = lx.link(text)
    assert len(got) == 2 * 10 * 500
    assert all(text[m.start : m.end] in ("Paris", "Brazil") for m in got)
    assert [m.start for m in got] == sorted(m.start for m in got)


def test_bad_inputs(linker):
    with pytest.raises(BadInputError, match="list of texts"):
        linker.link_batch("Paris")
    with pytest.raises(BadInputError, match="text 1"):
        linker.link_batch(["Paris", None])
    with pytest.raises(BadInputError, match="engine"):
        LexiconLinker(_lexicon(), engine="regex")
    with pytest.raises(BadInputError, match="needs a lexicon"):
        make_linker("lexicon")
    with pytest.raises(ArtifactError, match="does not exist"):
        make_linker("lexicon", lexicon="/nonexistent/lexicon")
    with pytest.raises(BadInputError, match="does not take"):
        make_linker("lexicon", lexicon=_lexicon(), colour="red")
    with pytest.raises(BadInputError, match="unknown entity linker"):
        make_linker("wikifier")
    assert linker.link("") == [] and linker.link_batch([]) == []


def test_registry_and_interface():
    assert {"lexicon", "spacy", "spotlight"} <= set(LINKERS)
    assert all(issubclass(c, EntityLinker) for c in LINKERS.values())

    class Upper(EntityLinker):
        name = "upper"

        def link_batch(self, texts):
            from rag.types import Mention

            return [[Mention(0, len(t), t, t.upper())] for t in texts]

    idx, ents = Upper().link_entities(["a", "b"])
    assert idx.tolist() == [0, 1] and ents.tolist() == ["A", "B"]
    assert Upper().link("x")[0].entity == "X"


def test_engines_agree_on_clean_text():
    lex = _lexicon()
    texts = ["New York City and York. Paris, Brazil; the US.", "where is paris", "The Who at Big Ben"]
    a = LexiconLinker(lex, engine="ahocorasick-rs").link_batch(texts)
    b = LexiconLinker(lex, engine="pyahocorasick").link_batch(texts)
    assert a == b
    assert LexiconLinker(lex).identity()["lexicon"] == lex.fingerprint


def test_case_stats_counts():
    lx = LexiconLinker(_lexicon())
    n_lower, n_upper = lx.case_stats(["We saw the moon. The Moon is bright; the Moon set.", "moon\nMoon"])
    i = lx.lexicon.forms.index("moon")
    assert (n_lower[i], n_upper[i]) == (1, 2)  # "moon" (line 2 is uncased, so ignored); "Moon" twice mid-sentence
    assert n_lower.dtype == np.int32


def test_short_forms_in_uncased_text_need_attested_capitals():
    b = LexiconBuilder()
    b.add_titles(["National Basketball Association", "IBM"])
    b.add_redirects([("NBA", "National Basketball Association")])
    lex = b.build()
    lex.n_upper[lex.forms.index("nba")] = 12  # the corpus writes "NBA" mid-sentence; "IBM" unseen
    lx = LexiconLinker(lex)
    assert spans(lx, "who won the nba title at ibm") == [("nba", "National Basketball Association")]


def test_labelled_sentences_scored_and_bad_lines_named(linker, tmp_path):
    import json

    from rag.entities.evaluate import evaluate_linker, load_labelled

    path = tmp_path / "gold.jsonl"
    rows = [{"text": "I flew to Paris.", "gold": [{"surface": "Paris", "entities": ["Paris"]}]},
            {"text": "The Moon rose over Brazil.", "gold": [{"surface": "Brazil", "entities": ["Brazil"]}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    sentences = load_labelled(path)
    assert [s.gold[0][:2] for s in sentences] == [(10, 15), (19, 25)]
    res = evaluate_linker(linker, sentences)
    assert res["mention"]["recall"] == 1.0 and res["mention"]["precision"] == pytest.approx(2 / 3, abs=1e-4)  # Moon is extra
    for bad, message in ((b"{not json", "gold.jsonl:1: not valid JSON"),
                         (b'{"text": "x"}', "gold.jsonl:1: expected"),
                         (b'{"text": "x", "gold": [{"surface": "y", "entities": []}]}', "gold.jsonl:1: surface 'y'")):
        path.write_bytes(bad)
        with pytest.raises(BadInputError, match=message):
            load_labelled(path)
