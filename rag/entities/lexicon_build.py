"""Building a whole lexicon: every source (rag.entities.lexicon), then the case statistics the linker counts over a
sample of the corpus. Above both the lexicon and the linker, which itself reads a lexicon."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from rag.corpus.store import PassageStore
from rag.entities.lexicon import Lexicon, LexiconBuilder, read_redirects
from rag.entities.linkers import LexiconLinker
from rag.types import Question


def build_lexicon(
    out: str | os.PathLike,
    *,
    passages: str | os.PathLike | None = None,
    surface_forms: Sequence[str | os.PathLike] = (),
    redirects: Sequence[str | os.PathLike] = (),
    questions: Sequence[Question] = (),
    qa_name: str = "qa",
    case_sample: int = 20_000,
    overwrite: bool = False,
    progress: bool = False,
) -> Lexicon:
    """Build and save a lexicon from any of: a passage store (titles, its redirects.tsv, case statistics
    from `case_sample` of its passages), DBpedia surface-form files, extra redirect TSVs, QA answer aliases."""
    b = LexiconBuilder()
    store = None
    if passages is not None:
        store = PassageStore(passages)
        import pyarrow.compute as pc

        titles = pc.unique(store.table.column("title")).to_pylist()
        b.add_titles(titles)
        b.add_redirects(store.redirects(), name=f"{store.folder}/redirects.tsv")
    for path in redirects:
        b.add_redirects(read_redirects(Path(path)), name=str(path))
    for path in surface_forms:
        b.add_surface_forms(path)
    if questions:
        b.add_aliases(questions, name=qa_name)
    lex = b.build()
    if store is not None and case_sample > 0:
        texts = sample_texts(store, case_sample)
        n_lower, n_upper = LexiconLinker(lex).case_stats(texts)
        lex.n_lower, lex.n_upper = n_lower, n_upper
    fields = {
        "sources": b.sources,
        "case_sample": case_sample if store is not None else 0,
    }
    if store is not None:
        fields["passages"] = {"path": str(store.folder), "fingerprint": store.fingerprint, "n_passages": len(store)}
    lex.save(out, overwrite=overwrite, **fields)
    return lex


def sample_texts(store, n: int, batch: int = 2_000) -> list[str]:
    """About n passage texts spread evenly over the store (every k-th batch)."""
    step = max(1, len(store) // max(n, 1))
    out: list[str] = []
    for i, (_, cols) in enumerate(store.iter_batches(batch_size=batch, columns=("text",))):
        if i % step == 0:
            out.extend(cols["text"])
        if len(out) >= n:
            break
    return out[:n]
