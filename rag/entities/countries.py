"""The countries `exclude_countries` leaves out of a question's entities: Kandpal et al.'s own list, verbatim.

The list is the reference's (nkandpa2/long_tail_knowledge, relevant_docs/country_entities.py, commit
c8d191e8), shipped as data/kandpal_countries.txt: 184 DBpedia resources, kept as they are, odd entries
included (Arab_world, Aruba, Curaçao, Member_states_of_the_United_Nations, North_China_Plain,
Sint_Maarten) and some sovereign states left out (People's_Republic_of_China is not there; China is not
either). A question entity is dropped only when the reference would have dropped it.

What a DBpedia-resource list means for our labels: a resource name is a Wikipedia title with spaces
written as "_" (Georgia_(country)). Our entity labels are corpus titles or DBpedia labels, so both sides
are compared by form_key after "_" -> " ": case, punctuation and runs of spaces do not matter
("United states" equals United_States, "Georgia country" equals Georgia_(country)); a different title for
the same country (e.g. "Republic of North Macedonia" for Republic_of_Macedonia) does not match, as in
the reference, which compares resource URIs.
"""
from __future__ import annotations

import functools
from importlib import resources

from rag.entities.fold import form_key

DATA_FILE = "data/kandpal_countries.txt"  # inside the rag.entities package; "#" lines are comments


def _read_resources() -> tuple[str, ...]:
    text = resources.files("rag.entities").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# the reference's DBpedia resource names, without http://dbpedia.org/resource/ ("Georgia_(country)")
COUNTRIES: tuple[str, ...] = _read_resources()


@functools.lru_cache(maxsize=1)
def country_keys() -> frozenset[str]:
    """form_key of every listed resource, "_" read as a space."""
    return frozenset(form_key(c.replace("_", " ")) for c in COUNTRIES)


def is_country(label: str) -> bool:
    """Is this entity label (a corpus title or DBpedia label) one of the reference's countries?

    form_key folds "_" to a space too, so a resource name given as a label ("Sint_Maarten") also matches."""
    return form_key(label) in country_keys()
