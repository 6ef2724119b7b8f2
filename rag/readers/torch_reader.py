"""The "torch" reader: a Hugging Face causal LM run by hand in torch, built for few-shot QA prompts.

Same weights as the transformers backend (a named model's dequantized GGUF, a .gguf file, a local folder
or a hub id); what differs is how a batch of prompts is run:

    prefix    the longest common prefix (in tokens) of the batch's prompts, i.e. the format header and
              few-shot demonstrations, is prefilled once; its keys/values are kept per (model, prefix tokens)
              in a small LRU cache (rag.readers.kv_prefix) and reused by later calls, sliced when a later
              prompt shares only part of it
    prefill   the rest of each prompt, rows sorted by length into micro-batches of `batch_size`, padded
              between the prefix and the suffix (every row ends in the same column), logits computed for
              the last position only (the output layer is a third of a 0.5B model's FLOPs)
    decode    batched greedy decoding; a row stops at the first token containing a newline (or EOS) and
              leaves the batch
    precision "bf16" where the CPU's matrix units make it faster (AMX, AVX512-BF16) or on CUDA, "fp32"
              otherwise; "auto" asks rag.readers.auto, which measures this machine once and caches it

`score_batch` teacher-forces a continuation after its prompt through the same prefix cache;
`generate_scored_batch` scores gold answers from the very prefill that answers the prompt.
"""
from __future__ import annotations

import inspect
import logging
from typing import Sequence

from rag.errors import BadInputError, require
from rag.readers.base import (DEFAULT_N_CTX, READERS, Generation, Reader, Score, check_golds, check_prompts, check_scoring,
                              first_line, gold_continuation, scored_aliases, with_golds)
from rag.readers.kv_prefix import PrefixCache, common_prefix_len, expand_layers, layers_to_cache, select_rows, cache_to_layers
from rag.readers.transformers import HFTokenized

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@READERS.register("torch")
class TorchReader(HFTokenized):
    def __init__(
        self,
        tokenizer,
        model,
        *,
        precision: str = "auto",
        device: str = "auto",
        n_ctx: int = DEFAULT_N_CTX,
        name: str = "torch",
        batch_size: int = 8,
        prefix_cache_entries: int = 4,
        n_threads: int | None = None,
    ):
        from rag.device import resolve_device, use_all_cores

        torch = require("torch", "transformers")
        self._torch = torch
        self.device = resolve_device(device)
        if precision == "auto":
            from rag.readers.auto import choose_precision

            precision = choose_precision(self.device)
        if precision not in PRECISIONS:
            raise BadInputError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and not self.device.startswith("cuda"):
            raise BadInputError("fp16 needs a CUDA device; on CPU use bf16 (fast with AMX / AVX512-BF16) or fp32")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if self.device == "cpu":
            if n_threads is not None:
                if not isinstance(n_threads, int) or n_threads <= 0:
                    raise BadInputError(f"n_threads must be a positive integer, got {n_threads!r}")
                torch.set_num_threads(n_threads)
            else:
                use_all_cores()
        self.precision = precision
        self.dtype = getattr(torch, PRECISIONS[precision])
        self.tok = tokenizer
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.name = name
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", None) or n_ctx
        self.n_ctx = min(n_ctx, int(limit))
        self.n_params = sum(p.numel() for p in model.parameters())
        self.prefix_cache = PrefixCache(prefix_cache_entries)
        self._pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        self._stop_ids = self._end_ids()
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self._newline_ids = {i for i, t in enumerate(texts) if "\n" in t}
        params = inspect.signature(self.model.forward).parameters
        self._keep_arg = "logits_to_keep" in params
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x

    @classmethod
    def load(cls, model: str, gguf_file: str | None = None, n_ctx: int | None = None, **options) -> "TorchReader":
        """A named model, a .gguf file, a local model folder or a hub id; options: precision ("auto", "bf16",
        "fp32", "fp16" on CUDA), device, batch_size, prefix_cache_entries, n_threads (CPU; default every core)."""
        from rag.device import resolve_device
        from rag.readers.transformers import open_model

        precision = options.get("precision", "auto")
        if precision == "auto":  # resolved before loading, so the weights load straight in that precision
            from rag.readers.auto import choose_precision

            precision = options["precision"] = choose_precision(resolve_device(options.get("device", "auto")))
        tok, m, named = open_model(model, gguf_file, dtype=PRECISIONS.get(precision, "float32"))
        reader = cls(tok, m, n_ctx=n_ctx or (named.n_ctx if named else DEFAULT_N_CTX), name=model, **options)
        if named:
            reader.prompt_format = named.prompt_format
        return reader

    # ---- the forward passes

    def _forward(self, input_ids, attention_mask, position_ids, past, keep: int):
        """One model call; logits (float32) of the last `keep` positions, and the updated cache."""
        kw = {"logits_to_keep": keep} if self._keep_arg else {}
        kw[self._cache_arg] = past
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True, **kw)
        cache = getattr(out, "cache", None)
        return out.logits[:, -keep:].float(), cache if cache is not None else out.past_key_values

    def _prefix(self, tokens: list[int]):
        """Keys/values of `tokens` (batch 1), from the prefix cache where it already holds a leading part."""
        torch = self._torch
        m, layers = self.prefix_cache.longest_match(tokens)
        self.prefix_cache.hits += m
        if m == len(tokens):
            return layers
        rest = torch.tensor([tokens[m:]], device=self.device)
        past = layers_to_cache(layers) if m else None
        positions = torch.arange(m, len(tokens), device=self.device)[None]
        mask = torch.ones(1, len(tokens), dtype=torch.long, device=self.device)
        _, cache = self._forward(rest, mask, positions, past, keep=1)
        layers = cache_to_layers(cache)
        self.prefix_cache.computed += len(tokens) - m
        self.prefix_cache.put(tokens, layers)
        return layers

    def _prefill(self, rows: list[list[int]], keep: int, max_prefix: int | None = None):
        """Run rows that share a prefix (cached) then their own suffixes in one padded batch.

        Layout of each row: [prefix P][padding][suffix]; returns (logits of the last `keep` columns (B, keep, V),
        cache, attention mask (B, P + S), next position per row (B,)).
        """
        torch = self._torch
        # every row must keep at least one token past the prefix (the last position's logits are wanted)
        p = min(common_prefix_len(rows), min(len(r) for r in rows) - 1)
        if max_prefix is not None:
            p = min(p, max_prefix)
        past = None
        if p > 0:
            past = layers_to_cache(expand_layers(self._prefix(rows[0][:p]), len(rows)))
        suffixes = [r[p:] for r in rows]
        s = max(len(x) for x in suffixes)
        ids = torch.full((len(rows), s), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), p + s), dtype=torch.long)
        mask[:, :p] = 1
        pos = torch.full((len(rows), s), p, dtype=torch.long)
        for i, x in enumerate(suffixes):
            n = len(x)
            ids[i, s - n :] = torch.tensor(x)
            mask[i, p + s - n :] = 1
            pos[i, s - n :] = torch.arange(p, p + n)
        dev = self.device
        logits, cache = self._forward(ids.to(dev), mask.to(dev), pos.to(dev), past, keep)
        lengths = torch.tensor([len(r) for r in rows])
        return logits, cache, mask.to(dev), lengths.to(dev)

    def _micro_batches(self, rows: list[list[int]]) -> list[list[int]]:
        """Row indices sorted by length, cut into batches of `batch_size` (little padding per batch)."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _warm_prefix(self, rows: list[list[int]]) -> None:
        """Put the whole call's common prefix in the cache once, before its micro-batches run."""
        p = min(common_prefix_len(rows), min(len(r) for r in rows) - 1)
        if p > 0 and len(rows) > 1:
            self._prefix(rows[0][:p])

    # ---- the Reader interface

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        return self.generate_scored_batch(prompts, [() for _ in prompts], max_new_tokens)  # no alias: nothing scored

    def generate_scored_batch(self, prompts: Sequence[str], golds: Sequence[Sequence[str]],
                              max_new_tokens: int = 16) -> list[Generation]:
        """generate_batch, scoring each prompt's gold aliases from the same prefill's keys and values (the answer
        tokens are the only extra work)."""
        check_golds(prompts, golds)
        check_prompts(prompts, max_new_tokens)
        if not prompts:
            return []
        rows = self._encode(prompts)
        for i, r in enumerate(rows):
            if not r:
                raise BadInputError(f"prompt {i} is empty")
        # alias tokens as the model splits prompt + alias; when that split changes the prompt's own last
        # tokens (rare), the pair is scored by score_batch instead
        aliases = [scored_aliases(g) for g in golds]
        conts = [[gold_continuation(p, a) for a in al] for p, al in zip(prompts, aliases)]
        pairs_text = [p + c for p, cs in zip(prompts, conts) for c in cs]
        joint = self._encode(pairs_text) if pairs_text else []
        alias_toks: list[list[list[int] | None]] = []
        it = iter(joint)
        for r, cs in zip(rows, conts):
            mine = []
            for _ in cs:
                j = next(it)
                mine.append(j[len(r):] if j[: len(r)] == r and len(j) > len(r) else None)
            alias_toks.append(mine)
        out: list[Generation | None] = [None] * len(rows)
        scores: dict[tuple[int, int], Score] = {}
        with self._torch.inference_mode():
            self._warm_prefix(rows)
            for chunk in self._micro_batches(rows):
                new, got = self._greedy([rows[i] for i in chunk], max_new_tokens, [alias_toks[i] for i in chunk])
                for b, i in enumerate(chunk):
                    out[i] = Generation(first_line(self.tok.decode(new[b], skip_special_tokens=True)), len(rows[i]), len(new[b]))
                    for a, sc in got[b].items():
                        scores[(i, a)] = sc
        rest = [(i, a) for i, toks in enumerate(alias_toks) for a, t in enumerate(toks) if t is None]
        if rest:
            for (i, a), sc in zip(rest, self.score_batch([prompts[i] for i, _ in rest], [conts[i][a] for i, a in rest])):
                scores[(i, a)] = sc
        pairs = [(i, aliases[i][a]) for i in range(len(rows)) for a in range(len(aliases[i]))]
        return with_golds(out, pairs, [scores[(i, a)] for i in range(len(rows)) for a in range(len(aliases[i]))])  # type: ignore[arg-type]

    def _score_aliases(self, logits, cache, mask, positions, alias_toks: list[list[list[int] | None]]) -> list[dict[int, Score]]:
        """Scores of each row's alias token lists after its prefilled prompt: the first token from the prompt's
        last logits, the rest from one batched forward of the aliases over copies of the prompt's cache rows."""
        torch = self._torch
        logp0 = torch.log_softmax(logits[:, -1], dim=-1)
        got: list[dict[int, Score]] = [{} for _ in alias_toks]
        pairs = [(b, a, t) for b, row in enumerate(alias_toks) for a, t in enumerate(row) if t]
        if not pairs:
            return got
        first = {(b, a): float(logp0[b, t[0]]) for b, a, t in pairs}
        rest = {(b, a): [] for b, a, _ in pairs}
        longer = [(b, a, t) for b, a, t in pairs if len(t) > 1]
        for start in range(0, len(longer), 4 * self.batch_size):
            part = longer[start : start + 4 * self.batch_size]
            idx = torch.tensor([b for b, _, _ in part], device=self.device)
            n = max(len(t) - 1 for _, _, t in part)
            ids = torch.full((len(part), n), self._pad_id, dtype=torch.long)
            pad = torch.zeros((len(part), n), dtype=torch.long)
            for j, (_, _, t) in enumerate(part):
                ids[j, : len(t) - 1] = torch.tensor(t[:-1])
                pad[j, : len(t) - 1] = 1  # right padding: later columns only see earlier ones, and are ignored
            sub = layers_to_cache(select_rows(cache_to_layers(cache), idx))
            m = torch.cat([mask[idx], pad.to(self.device)], dim=1)
            pos = positions[idx][:, None] + torch.arange(n, device=self.device)[None]
            lg, _ = self._forward(ids.to(self.device), m, pos, sub, keep=n)
            lp = torch.log_softmax(lg, dim=-1)
            for j, (b, a, t) in enumerate(part):
                rest[(b, a)] = [float(lp[j, c, t[c + 1]]) for c in range(len(t) - 1)]
        for b, a, t in pairs:
            vals = (first[(b, a)], *rest[(b, a)])
            got[b][a] = Score(float(sum(vals)), vals, tuple(self.tok.decode([x]) for x in t))
        return got

    def _greedy(self, rows: list[list[int]], max_new_tokens: int, alias_toks: list[list[list[int] | None]]):
        """(greedy continuation tokens of each row: up to and including the first newline token, without EOS;
        the scores of each row's `alias_toks` after its prompt, by alias index)."""
        torch = self._torch
        logits, cache, mask, positions = self._prefill(rows, keep=1)
        got = self._score_aliases(logits, cache, mask, positions, alias_toks)
        new: list[list[int]] = [[] for _ in rows]
        alive = list(range(len(rows)))  # batch position -> row
        for step in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1)
            still = []
            for b, t in enumerate(nxt.tolist()):
                row = alive[b]
                if t in self._stop_ids:
                    continue
                new[row].append(t)
                if t not in self._newline_ids:
                    still.append(b)
            if not still or step == max_new_tokens - 1:
                break
            if len(still) < len(alive):
                keep = torch.tensor(still, device=self.device)
                cache = layers_to_cache(select_rows(cache_to_layers(cache), keep))
                nxt, mask, positions = nxt[keep], mask[keep], positions[keep]
                alive = [alive[b] for b in still]
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            logits, cache = self._forward(nxt[:, None], mask, positions[:, None], cache, keep=1)
            positions = positions + 1
        return new, got

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        """Teacher-forced log-probability of each continuation, as the model splits prompt + continuation."""
        check_scoring(prompts, continuations)
        torch = self._torch
        full = self._encode([p + c for p, c in zip(prompts, continuations)])
        alone = self._encode(list(prompts))
        # the first continuation token: where prompt + continuation stops matching the prompt's own tokens
        starts = [max(1, common_prefix_len([a, f])) for a, f in zip(alone, full)]
        scores: list[Score | None] = [None] * len(full)
        with torch.inference_mode():
            for chunk in self._micro_batches(full):
                rows = [full[i] for i in chunk]
                n_cont = [len(full[i]) - starts[i] for i in chunk]
                keep = max(n_cont) + 1
                # the cached prefix ends before every row's last prompt token, whose logits score the first token
                logits, *_ = self._prefill(rows, keep=keep, max_prefix=min(starts[i] for i in chunk) - 1)
                logp = torch.log_softmax(logits, dim=-1)
                for b, i in enumerate(chunk):
                    c = n_cont[b]
                    ids = full[i][starts[i] :]
                    # column keep-1 predicts the token after the row's end; columns keep-1-c .. keep-2 the continuation
                    cols = torch.arange(keep - 1 - c, keep - 1)
                    vals = logp[b, cols, torch.tensor(ids)].tolist() if c else []
                    tokens = tuple(self.tok.decode([t]) for t in ids)
                    scores[i] = Score(float(sum(vals)), tuple(float(v) for v in vals), tokens)
        return scores  # type: ignore[return-value]

    def close(self) -> None:
        self.prefix_cache.clear()
        self.model = None
