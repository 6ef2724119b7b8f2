"""Lexicon: folding, sources, priors and threshold, artifact round trip and refusals."""
from __future__ import annotations

import lzma

import numpy as np
import pytest

from rag.entities.fold import fold, fold_many, form_key
from rag.entities.lexicon import ALIAS, DBPEDIA, RESOURCE, TITLE, Lexicon, LexiconBuilder, linkable
from rag.entities.lexicon_build import build_lexicon
from rag.errors import ArtifactError, BadInputError
from rag.types import Question
from tests.unit.entities_helpers import tiny_store  # noqa: F401 (fixture)


def test_fold_keeps_length_and_maps_punctuation():
    s = "Dante's Inferno, AT&T; İstanbul\n"
    f = fold(s)
    assert len(f) == len(s)
    assert f.startswith("dante s inferno  at t ")
    assert fold_many(["A-B", "", "C.D"]) == ["a b", "", "c d"]
    assert form_key("  Dr.  Who ") == "dr who"


def test_linkable_rules():
    assert linkable("paris") and linkable("us")
    assert not linkable("the") and not linkable("x") and not linkable("1972") and not linkable("")
    assert linkable("1972", years=True) and linkable("476", years=True)
    assert not linkable("12", years=True) and not linkable("19721", years=True)


def test_years_link_only_from_a_lexicon_built_with_them():
    from rag.entities.linkers import LexiconLinker

    text = "Tushork Institute was founded in 1913. In 1913 nothing else happened."
    for years, want in ((False, ["Tushork Institute"]), (True, ["Tushork Institute", "1913", "1913"])):
        b = LexiconBuilder(years=years)
        b.add_titles(["Tushork Institute", "1913"])
        got = [text[m.start:m.end] for m in LexiconLinker(b.build()).link(text)]
        assert got == want, years


def _builder():
    b = LexiconBuilder()
    b.add_titles(["Dante Alighieri", "Florence", "Mercury (planet)", "Mercury (element)", "Apple Inc."])
    b.add_redirects([("Dante", "Dante Alighieri"), ("Apple", "Apple Inc.")])
    return b


def test_sources_and_entities(tmp_path):
    b = _builder()
    sf = tmp_path / "sf.tsv.xz"
    with lzma.open(sf, "wt", encoding="utf-8") as f:
        f.write("dante\tdante_alighieri\nfirenze\tflorence\nbig_apple\tnew_york_city\napple\tapple_(fruit)\nnyc\tnyc_(disambiguation)\n")
    assert b.add_surface_forms(sf) == 4  # the disambiguation page is skipped
    b.add_titles(["Larry Page"])
    b.add_aliases([Question("q", "where was dante born", ("Florence", "14 December 1972", "Larry Page and Sergey Brin"))])
    lex = b.build()
    # DBpedia resources unify with corpus titles by form_key; unknown ones get a capitalized label
    assert lex.entity_id("dante_alighieri") == lex.entity_id("Dante Alighieri")
    assert "New york city" in lex.labels
    cands = dict((lab, src) for lab, _, src in lex.candidates("Dante"))
    assert set(cands["Dante Alighieri"]) == {"redirect", "dbpedia"}
    # a new alias is an entity of its own; a known one is not duplicated
    assert lex.entity_id("14 December 1972") is not None
    assert sum(1 for lab in lex.labels if form_key(lab) == "florence") == 1
    # a list of known forms is not an entity
    assert lex.entity_id("Larry Page and Sergey Brin") is None
    assert lex.cand_sources.dtype == np.int16 and set(np.unique(lex.cand_sources)) <= set(range(64))
    assert all(ALIAS & s == 0 or lex.labels[e] == "14 December 1972" for s, e in zip(lex.cand_sources, lex.cand_entity) if s == ALIAS)


def test_prior_and_threshold():
    lex = _builder().build()
    # "mercury" names two planets-vs-element titles equally: a tie is never linked
    fid = lex.forms.index("mercury")
    ent, prior = lex.resolve(0.5)
    assert ent[fid] == -1 and prior[fid] == pytest.approx(0.5)
    # "apple" names Apple Inc. only (redirect)
    ent, prior = lex.resolve(0.9)
    assert lex.labels[ent[lex.forms.index("apple")]] == "Apple Inc."
    with pytest.raises(BadInputError):
        lex.resolve(0.0)


def test_prior_prefers_popular_entity(tmp_path):
    b = LexiconBuilder()
    b.add_titles(["Paris", "Paris (mythology)"])
    b.add_redirects([("City of Light", "Paris"), ("Lutetia", "Paris"), ("Paname", "Paris")])
    lex = b.build()
    cands = lex.candidates("Paris")
    assert cands[0][0] == "Paris" and cands[0][1] > 0.8
    ent, _ = lex.resolve(0.5)
    assert lex.labels[ent[lex.forms.index("paris")]] == "Paris"
    # with a threshold above the prior nothing is linked
    ent, _ = lex.resolve(0.99)
    assert ent[lex.forms.index("paris")] == -1


def test_the_prefix_dropped_when_shadowing():
    b = LexiconBuilder()
    b.add_titles(["Amazons", "Amazon River", "Amazon", "The Who"])
    b.add_redirects([("The Amazon", "Amazons")])
    lex = b.build()
    assert "the amazon" not in lex.forms
    assert "the who" in lex.forms  # "who" alone is a stopword


def test_save_load_roundtrip_and_refusals(tmp_path):
    lex = _builder().build()
    out = tmp_path / "lex"
    m = lex.save(out)
    assert m["kind"] == "lexicon" and m["format"] == 1 and len(m["fingerprint"]) == 32
    back = Lexicon.load(out)
    assert back.labels == lex.labels and back.forms == lex.forms
    assert np.array_equal(back.cand_score, lex.cand_score) and back.fingerprint == m["fingerprint"]
    with pytest.raises(ArtifactError, match="already exists"):
        lex.save(out)
    with pytest.raises(ArtifactError, match="does not exist"):
        Lexicon.load(tmp_path / "missing")
    with open(out / "forms.parquet", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ArtifactError, match="truncated or replaced"):
        Lexicon.load(out)
    (tmp_path / "half").mkdir()
    with pytest.raises(ArtifactError, match="no manifest"):
        Lexicon.load(tmp_path / "half")


def test_bad_surface_form_file(tmp_path):
    bad = tmp_path / "sf.tsv"
    bad.write_text("paris\tparis\nno tab here\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"sf.tsv:2"):
        LexiconBuilder().add_surface_forms(bad)
    with pytest.raises(BadInputError, match="does not exist"):
        LexiconBuilder().add_surface_forms(tmp_path / "nope.tsv")
    bad.write_text("paris\tParis\tFrance\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"sf.tsv:1: expected `surface<TAB>resource`"):
        LexiconBuilder().add_surface_forms(bad)


def test_bad_redirects_file(tiny_store, tmp_path):
    bad = tmp_path / "redirects.tsv"
    bad.write_text("US\tUnited States\n\nno tab here\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"redirects.tsv:3: expected `alias<TAB>target`"):
        build_lexicon(tmp_path / "lex", passages=tiny_store, redirects=[bad])
    with pytest.raises(BadInputError, match="does not exist"):
        build_lexicon(tmp_path / "lex", passages=tiny_store, redirects=[tmp_path / "nope.tsv"])


def test_empty_lexicon_is_an_error(tmp_path):
    with pytest.raises(BadInputError, match="empty"):
        LexiconBuilder().build()
    with pytest.raises(BadInputError, match="empty"):
        build_lexicon(tmp_path / "x", questions=[Question("q", "what", ("the",))])


def test_build_lexicon_from_store(tiny_store, tmp_path):
    lex = build_lexicon(tmp_path / "lex", passages=tiny_store, questions=[Question("q", "q?", ("Salzburg",))], case_sample=100)
    assert lex.manifest["passages"]["n_passages"] > 0
    assert lex.entity_id("Wolfgang Amadeus Mozart") is not None
    # case statistics: "composer" is written in lower case in the sample, "Mozart" capitalized
    i = lex.forms.index("composer")
    j = lex.forms.index("mozart")
    assert lex.n_lower[i] >= 2 and lex.n_upper[j] >= 1 and lex.n_lower[j] == 0
    assert TITLE and RESOURCE and DBPEDIA  # names exported


def test_alias_spelling_majority_relabels_resource_entities(tmp_path):
    b = LexiconBuilder()
    sf = tmp_path / "sf.tsv"
    sf.write_text("usa\tunited_states\n", encoding="utf-8")
    b.add_surface_forms(sf)
    b.add_aliases([Question(str(i), "q", (a,)) for i, a in enumerate(["UNited States", "United States", "United States", "United+States"])])
    lex = b.build()
    assert lex.labels[lex.entity_id("united states")] == "United States"
