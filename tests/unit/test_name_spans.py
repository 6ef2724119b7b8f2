"""Proper-name spans and the linker's sub-span rule, on hand-written cases from each family of wrong links."""
from __future__ import annotations

import pytest

from rag.entities.lexicon import LexiconBuilder
from rag.entities.linkers import LexiconLinker
from rag.entities.spans import text_spans


def spans(text):
    return [text[a:b] for a, b in text_spans(text)]


@pytest.mark.parametrize("text, want", [
    # initials and first names
    ("Where was Robert Crannell Minor born?", ["Robert Crannell Minor"]),
    ("Robert A. Miller met J. R. R. Tolkien.", ["Robert A. Miller", "J. R. R. Tolkien"]),
    ("Who is John Keating?", ["John Keating"]),
    # particles
    ("Charles de Freycinet was born in Foix.", ["Charles de Freycinet", "Foix"]),
    ("Ulrich von Hassell and Theo van Gogh", ["Ulrich von Hassell", "Theo van Gogh"]),
    ("the Battle of the Bulge", ["Battle of the Bulge"]),
    # "and" coordinates two names (template subjects such as this one come from question frames)
    ("Who founded Natalie Stovall and the Drive?", ["Natalie Stovall", "Drive"]),
    ("France and the United States signed it.", ["France", "United States"]),
    # Place, Region
    ("Where is Crow Harbour, New Brunswick located?", ["Crow Harbour, New Brunswick"]),
    # quoted titles
    ('the novel "Time to Come" by Smith', ["Time to Come", "Smith"]),
    ('He wrote "Time to Come"', ["Time to Come"]),  # the closing quote ends the text
    ('"Time to Come" is a novel', ["Time to Come"]),  # the opening quote starts it
    ("the song \u201cDon't Take It Away\u201d", ["Don't Take It Away"]),
    # contractions continue a name, a possessive ends it
    ("Who performed Don't Take It Away?", ["Don't Take It Away"]),
    ("Who is Cedric Wyatt's child?", ["Cedric Wyatt"]),
    # hyphens and ampersands
    ("Charles Watson-Wentworth sold it to Marks & Spencer.", ["Charles Watson-Wentworth", "Marks & Spencer"]),
    # what must stay apart
    ("Mozart and Beethoven lived in Vienna.", ["Mozart", "Beethoven", "Vienna"]),
    ("It went to France, Germany, Italy and Spain.", ["France", "Germany", "Italy", "Spain"]),
    ("In Paris the rain fell. However, John left.", ["Paris", "John"]),
    ("He moved to Berlin in March 1990.", ["Berlin", "March"]),
    ("The Hague is a city; see The Golden Gate.", ["Hague", "Golden Gate"]),
    ("Which country is Darreh Sib located in?", ["Darreh Sib"]),
])
def test_name_spans(text, want):
    assert spans(text) == want


def test_spans_do_not_cross_lines_or_texts():
    assert spans("New\nYork City") == ["New", "York City"]
    assert spans('an open " quote\nTime to Come"') == ["Time", "Come"]


@pytest.fixture(scope="module")
def linker():
    b = LexiconBuilder()
    b.add_titles(["Robert", "Charles", "Harbor", "Time", "John", "New Brunswick", "Minor", "Mozart", "Beethoven", "Vienna",
                  "Robert A. Miller", "Golden Gate", "Stagira", "Chalcidice"])
    b.add_redirects([("Harbour", "Harbor")])
    return LexiconLinker(b.build())


def linked(linker, text):
    return [(text[m.start : m.end], m.entity) for m in linker.link(text)]


@pytest.mark.parametrize("text, want", [
    ("Where was Robert Crannell Minor born?", []),                      # Robert, Minor: parts of one name
    ("Robert A. Miller wrote it.", [("Robert A. Miller", "Robert A. Miller")]),  # the whole span is a form: linked
    ("Robert A. Mills wrote it.", []),
    ("Who was Charles de Freycinet?", []),
    ("Where is Crow Harbour, New Brunswick located?", []),
    ('He wrote "Time to Come" in 1950.', []),
    ("Who is John Keating?", []),
    # standalone names and coordinated names still link
    ("Robert said that John left for New Brunswick.", [("Robert", "Robert"), ("John", "John"), ("New Brunswick", "New Brunswick")]),
    ("Mozart and Beethoven lived in Vienna.", [("Mozart", "Mozart"), ("Beethoven", "Beethoven"), ("Vienna", "Vienna")]),
    ("Time is short; the harbour is near.", [("Time", "Time")]),
    # "Place, Region": the Place still names the place, the Region only qualifies it
    ("Aristotle was born in Stagira, Chalcidice.", [("Stagira", "Stagira")]),
    ("They sailed from Stagira, Chalcidice, and Vienna.", [("Stagira", "Stagira"), ("Chalcidice", "Chalcidice"), ("Vienna", "Vienna")]),
    ("Who is the author of The Golden Gate?", [("Golden Gate", "Golden Gate")]),
])
def test_linker_drops_strict_parts_of_name_spans(linker, text, want):
    assert linked(linker, text) == want


def test_span_rule_is_optional_and_recorded(linker):
    flat = LexiconLinker(linker.lexicon, name_spans=False)
    assert linked(flat, "Who is John Keating?") == [("John", "John")]
    assert "name_spans" in linker.identity() and "name_spans" not in flat.identity()


def test_corpus_and_question_split_alike(linker):
    """The same name in a passage and in a question gives the same mentions."""
    q = "Where was Robert Crannell Minor born?"
    p = "Robert Crannell Minor was born in Vienna. Robert Crannell Minor died in 1900."
    assert linked(linker, q) == []
    assert linked(linker, p) == [("Vienna", "Vienna")]


def test_a_match_across_a_name_boundary_is_dropped():
    b = LexiconBuilder()
    b.add_titles(["The Divine", "Bertrand born", "Comedy", "The Who", "Divine Comedy"])
    lk = LexiconLinker(b.build())
    assert linked(lk, "I read The Divine Comedy twice.") == [("Divine Comedy", "Divine Comedy")] or \
        all(m[0] != "The Divine" for m in linked(lk, "I read The Divine Comedy twice."))
    assert linked(lk, "She saw The Divine Comedy Club.") == []  # "The Divine" ends inside "Divine Comedy Club"
    assert linked(lk, "Where was Jean-Michel Bertrand born?") == []  # "Bertrand born" starts inside the name
    assert linked(lk, "We saw The Who play.") == [("The Who", "The Who")]  # the whole name: kept
