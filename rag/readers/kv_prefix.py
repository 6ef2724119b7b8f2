"""Keys and values of a shared prompt prefix (the few-shot demonstrations), computed once and reused.

Every prompt of a run opens with the same header and demonstrations, so their keys/values are the same
for every question. `PrefixCache` keeps the keys/values of recent prefixes, each stored as
(token ids, per-layer (key, value) tensors of shape (1, kv_heads, prefix_len, head_dim)). Causal
attention makes the keys/values of a prefix's first m tokens independent of what follows, so an entry
also serves any prompt that shares only its first m tokens (the entry is sliced), as llama.cpp's cache does.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

# per layer: (key, value), each (batch, kv_heads, tokens, head_dim)
LayerKV = tuple  # (torch.Tensor, torch.Tensor)


def common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token id lists (0 for no rows)."""
    if not rows:
        return 0
    first = rows[0]
    n = min(len(r) for r in rows)
    for r in rows[1:]:
        i = 0
        m = min(n, len(r))
        while i < m and r[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n


def cache_to_layers(cache) -> list[LayerKV]:
    """A transformers Cache (or legacy tuple) -> [(key, value)] per layer."""
    if isinstance(cache, (tuple, list)):
        return [(k, v) for k, v in cache]
    layers = getattr(cache, "layers", None)
    if layers is not None and layers and hasattr(layers[0], "keys"):
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers < 4.54


def layers_to_cache(layers: Sequence[LayerKV]):
    """[(key, value)] per layer -> a fresh transformers DynamicCache holding them."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache


def slice_layers(layers: Sequence[LayerKV], n: int) -> list[LayerKV]:
    """The first n tokens of every layer's keys/values (views, no copy)."""
    return [(k[:, :, :n], v[:, :, :n]) for k, v in layers]


def expand_layers(layers: Sequence[LayerKV], batch: int) -> list[LayerKV]:
    """Batch-1 keys/values broadcast to `batch` rows (views; the model's concatenation copies them)."""
    return [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers]


def select_rows(layers: Sequence[LayerKV], rows) -> list[LayerKV]:
    """Keep only the given batch rows (an index tensor) of every layer."""
    return [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in layers]


class PrefixCache:
    """Least-recently-used store of prefix keys/values: tuple(token ids) -> [(key, value)] per layer."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, ...], list[LayerKV]] = OrderedDict()
        self.hits = 0  # prefix tokens served from the cache (for tests and benchmarks)
        self.computed = 0  # prefix tokens computed

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def longest_match(self, tokens: Sequence[int]) -> tuple[int, list[LayerKV] | None]:
        """(m, keys/values of tokens[:m]) for the entry sharing the most leading tokens with `tokens`."""
        best, best_key = 0, None
        for key in self._entries:
            m = common_prefix_len([key, tokens])
            if m > best:
                best, best_key = m, key
        if best_key is None:
            return 0, None
        self._entries.move_to_end(best_key)
        return best, slice_layers(self._entries[best_key], best)

    def put(self, tokens: Sequence[int], layers: list[LayerKV]) -> None:
        key = tuple(tokens)
        # an entry that is a prefix of the new one adds nothing
        for old in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
            del self._entries[old]
        self._entries[key] = layers
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
