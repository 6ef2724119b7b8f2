"""A tiny hand-written corpus for the entity-linking and counting unit tests (fixtures import these)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.artifacts import atomic_dir
from rag.corpus.store import REDIRECTS, PassageWriter
from rag.types import Passage, Question

# doc_id -> (title, [passage texts])
DOCS = {
    "1": ("Wolfgang Amadeus Mozart", [
        "Wolfgang Amadeus Mozart was a composer born in Salzburg. Mozart wrote The Magic Flute.",
        "The composer moved to Vienna, where Mozart died in 1791. Salzburg honours him.",
    ]),
    "2": ("Salzburg", ["Salzburg is a city in Austria. The composer Mozart was born there."]),
    "3": ("Vienna", ["Vienna is the capital of Austria. Mozart and Beethoven lived in Vienna."]),
    "4": ("Ludwig van Beethoven", ["Ludwig van Beethoven was a composer. Beethoven moved to Vienna from Bonn."]),
    "5": ("Dante Alighieri", ["Dante Alighieri was born in Florence. Dante wrote the Divine Comedy."]),
    "6": ("Florence", ["Florence is a city in Italy. Dante was born in Florence.", "The composer of the city anthem lived in Florence."]),
    "7": ("Divine Comedy", ["The Divine Comedy is a poem by Dante. It describes Florence."]),
    "8": ("Austria", ["Austria is a country. Its capital is Vienna; Salzburg is another city."]),
    "9": ("Italy", ["Italy is a country. Florence and Rome are in Italy."]),
    "10": ("Composer", ["A composer writes music. The word composer comes from Latin."]),
    "11": ("The Magic Flute", ["The Magic Flute is an opera by Mozart, first performed in Vienna."]),
}
REDIRECT_ROWS = [("Amadeus Mozart", "Wolfgang Amadeus Mozart"), ("Mozart", "Wolfgang Amadeus Mozart"), ("Beethoven", "Ludwig van Beethoven"), ("Dante", "Dante Alighieri")]

QUESTIONS = [
    Question("t-0", "where was mozart born", ("Salzburg",)),
    Question("t-1", "where did beethoven move to", ("Vienna", "Vienna, Austria")),
    Question("t-2", "who wrote the divine comedy", ("Dante Alighieri", "Dante")),
    Question("t-3", "what is the capital of austria", ("Vienna",)),
    Question("t-4", "what is a thing", ("42",)),
    Question("t-5", "who composed the magic flute", ()),
]


def write_store(folder: Path, docs=DOCS, redirects=REDIRECT_ROWS) -> Path:
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        for doc_id, (title, texts) in docs.items():
            w.add(Passage(pid=f"{doc_id}#{i}", doc_id=doc_id, title=title, text=t, position=i) for i, t in enumerate(texts))
        (tmp / REDIRECTS).write_text("".join(f"{a}\t{b}\n" for a, b in redirects), encoding="utf-8")
        w.close(extra_files=(REDIRECTS,))
    return folder


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("tiny") / "passages")
