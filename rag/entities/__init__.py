"""Entity linking and relevant-document counts (Kandpal et al. 2023)."""
from rag.entities.dataframes import OpenCounts, open_counts
from rag.entities.lexicon import Lexicon, LexiconBuilder
from rag.entities.lexicon_build import build_lexicon
from rag.entities.linkers import LINKERS, EntityLinker, LexiconLinker, make_linker

__all__ = ["LINKERS", "EntityLinker", "Lexicon", "LexiconBuilder", "LexiconLinker", "OpenCounts", "build_lexicon", "make_linker",
           "open_counts"]
