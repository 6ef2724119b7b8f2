"""Wikitext -> plain text: each construct on its own, then the invariant that no markup survives."""
from __future__ import annotations

import pytest

from rag.corpus.wikitext import normalize_title, redirect_target, strip_markup


@pytest.mark.parametrize(
    "wikitext, expected",
    [
        ("'''Bold''' and ''italic'' and '''''both'''''.", "Bold and italic and both."),
        ("A [[link]], a [[target|label]] and [[apple]]s.", "A link, a label and apples."),
        ("[[Paris (France)|]] and [[:Category:Cities|cities]].", "Paris and cities."),
        ("Text.[[Category:Things]]\n[[fr:Chose]]", "Text."),
        ("[[File:A.jpg|thumb|A [[caption]] with [[x|y]]]]Text.", "Text."),
        ("[[Image:B.png|left|200px]]Text.", "Text."),
        ("See [https://example.org the site] and [http://x.org].", "See the site and."),
        ("Before{{Infobox person|name={{nowrap|A B}}|born={{birth date|1900|1|1}}}} after.", "Before after."),
        ("Fact.<ref>{{cite web|url=http://x}}</ref> More.<ref name=\"a\" /> End.", "Fact. More. End."),
        ("Fact.<ref name=b>Source [[link]].</ref>", "Fact."),
        ("A <!-- hidden\nmulti-line --> B", "A B"),
        ("x <math>\\alpha^2</math> y", "x y"),
        ("a<br />b <span style=\"x\">c</span> <small>d</small>", "ab c d"),
        ("It is {{convert|5|km|mi}} long, {{lang|fr|très}} bien.", "It is 5 km long, très bien."),
        ("Tom &amp; Jerry&nbsp;show &lt;b&gt;", "Tom & Jerry show <b>"),
        ("__NOTOC__Text", "Text"),
        ("Name ({{IPA|/x/}}; born 1900) is.", "Name (born 1900) is."),
        ("Name ({{IPA|/x/}}) is.", "Name is."),
        ("* one\n** two\n# three\n: indented\n; term", "one\ntwo\nthree\nindented\nterm"),
        ("before\n{| class=\"wikitable\"\n|-\n| a || b\n|-\n| {{x}} || {|\n|inner\n|}\n|}\nafter", "before\nafter"),
    ],
)
def test_constructs(wikitext, expected):
    assert strip_markup(wikitext) == expected


def test_headings_and_empty_sections():
    text = (
        "Lead.\n== History ==\nBody.\n=== Early ===\nEarly body.\n=== Empty ===\n{{main|x}}\n"
        "== Career ==\n=== Late ===\nLate body.\n== References ==\n{{reflist}}\n== External links ==\n* [http://x]\n"
    )
    assert strip_markup(text) == "Lead.\nHistory.\nBody.\nEarly.\nEarly body.\nCareer.\nLate.\nLate body."


def test_heading_that_ends_with_punctuation():
    assert strip_markup("== What? ==\nThat.") == "What?\nThat."


def test_unbalanced_markup_does_not_survive():
    for text in ["a {{b|c", "a }} b", "a [[b c", "a ]] b", "x {| y", "'''a"]:
        out = strip_markup(text)
        for token in ("{{", "}}", "[[", "]]", "'''"):
            assert token not in out, (text, out)


def test_redirects():
    assert redirect_target("#REDIRECT [[Computer accessibility]]") == "Computer accessibility"
    assert redirect_target("#redirect: [[foo_bar#Section|x]] {{R}}") == "Foo bar"
    assert redirect_target("Not a #REDIRECT [[x]]") is None
    assert normalize_title("  hello__world ") == "Hello world"
