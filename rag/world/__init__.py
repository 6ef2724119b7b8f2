"""A generated fictional world: exact relevant-document counts, a tiny LM trained on it, probes, and `rag bench`."""
from rag.world.generator import RELATIONS, World, WorldParams, generate, open_world, write_world

__all__ = ["RELATIONS", "World", "WorldParams", "generate", "open_world", "write_world"]
