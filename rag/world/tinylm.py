"""A tiny causal language model trained from scratch on a world's corpus, and its reader backend "tiny-lm".

Tokenizer: words, single punctuation marks and line breaks (regex below), the vocabulary built from the
world's own texts; anything else is <unk>. Model: a GPT (pre-norm blocks, learned positions, tied input
and output embeddings), a few million parameters, with a copy head (a pointer over earlier tokens mixed
with the vocabulary distribution through a learned sink, as in pointer-generator networks): without it
a model this small does not learn to copy an answer from a passage within minutes of CPU training. Training: random windows of `block_size` + 1 tokens
from the documents joined by blank lines (the separator of few-shot prompts), AdamW with cosine decay,
a fixed number of steps (deterministic for a seed and thread count). `Trainer.step` takes one batch the caller
built, so the dynamics and injection experiments (rag.world.dynamics, rag.world.inject) train through the same
loop; `score_targets` is the one target log-probability used by the probes, the dynamics logs and the reader's
`score_batch`; `grow_vocabulary` adds words to a trained model.

Model folder (format 1), written atomically:
    weights.safetensors   float32 tensors (no pickle is ever loaded)
    vocab.json            {"version": 1, "tokens": [str]}   token id -> token
    manifest.json         kind "model/tiny-lm": config, n_params, training (steps, tokens, seconds, losses),
                          corpus fingerprint, excluded facts (counterfactual training)
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rag.artifacts import atomic_dir, check_manifest_files, file_sizes, read_manifest, write_manifest
from rag.errors import ArtifactError, BadInputError, require
from rag.readers.base import READERS, Generation, Reader, Score, check_prompts, check_scoring

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "model/tiny-lm"
WEIGHTS, VOCAB = "weights.safetensors", "vocab.json"
PAD, UNK, BOS, NL = "<pad>", "<unk>", "<bos>", "\n"
_TOKEN = re.compile(r"\n|[^\W\d_]+|\d+|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,?!:;)")


class WordTokenizer:
    """token <-> id over a fixed vocabulary; ids 0..3 are <pad>, <unk>, <bos>, newline."""

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:4]) != [PAD, UNK, BOS, NL]:
            raise ArtifactError("vocabulary must start with <pad>, <unk>, <bos>, newline; rebuild the model")
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.nl = 3

    @classmethod
    def build(cls, texts: Iterable[str]) -> "WordTokenizer":
        seen: dict[str, None] = {}
        for t in texts:
            for tok in _TOKEN.findall(t):
                seen.setdefault(tok, None)
        seen.pop(NL, None)
        return cls([PAD, UNK, BOS, NL, *sorted(seen)])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        get = self.ids.get
        return [get(t, 1) for t in _TOKEN.findall(text)]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            t = self.tokens[i]
            if t in (PAD, BOS):
                continue
            if out and t not in _NO_SPACE_BEFORE and t != NL and out[-1] != NL:
                out.append(" ")
            out.append(t)
        return "".join(out)


@dataclass(frozen=True)
class TinyConfig:
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 192
    block_size: int = 320  # context length (training windows and the reader's n_ctx)
    dropout: float = 0.0
    copy_head: bool = True  # a pointer over earlier tokens mixed with the vocabulary (See et al. 2017)
    # std of a fixed random vector added to each token's embedding: rare names keep a distinct identity that
    # attention can match (a name seen 3 times barely moves its trained embedding); 0 turns it off
    identity_std: float = 0.15


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 400
    batch_size: int = 12
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.05
    seed: int = 0
    threads: int = 0  # torch threads (0: every core this process may use)

    def check(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise BadInputError(f"training {name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise BadInputError(f"learning rate must be positive, got {self.lr}")


def _torch():
    return require("torch", "world")


def make_model(cfg: TinyConfig, vocab_size: int):
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.d_model)
            self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
            self.proj = nn.Linear(cfg.d_model, cfg.d_model)
            self.ln2 = nn.LayerNorm(cfg.d_model)
            self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
            self.out = nn.Linear(4 * cfg.d_model, cfg.d_model)

        def forward(self, x, mask):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, cfg.n_head, C // cfg.n_head).permute(2, 0, 3, 1, 4)
            if mask is None:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab_size, cfg.d_model)
            self.pos = nn.Embedding(cfg.block_size, cfg.d_model)
            if cfg.identity_std > 0:  # seeded apart from training, saved with the weights
                g = torch.Generator().manual_seed(20240601)
                self.register_buffer("ident", torch.randn(vocab_size, cfg.d_model, generator=g) * cfg.identity_std)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln = nn.LayerNorm(cfg.d_model)
            if cfg.copy_head:
                self.copy_q = nn.Linear(cfg.d_model, cfg.d_model)
                self.copy_k = nn.Linear(cfg.d_model, cfg.d_model)
                self.sink = nn.Linear(cfg.d_model, 1)
            self.apply(self._init)

        @staticmethod
        def _init(m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

        def forward(self, idx, pad=None):
            """idx (B, T) -> next-token log-probabilities (B, T, V). pad (B,): left padding per row."""
            B, T = idx.shape
            pos = torch.arange(T, device=idx.device).expand(B, T)
            mask = None
            if pad is not None:
                pos = (pos - pad[:, None]).clamp(min=0)
                keep = torch.arange(T, device=idx.device)[None, :] >= pad[:, None]  # (B, T) real keys
                causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
                mask = (causal[None] & keep[:, None, :])[:, None]  # (B, 1, T, T)
                mask = mask | torch.eye(T, dtype=torch.bool, device=idx.device)[None, None]  # pad rows see themselves
            x = self.tok(idx) + self.pos(pos)
            if cfg.identity_std > 0:
                x = x + self.ident[idx]
            for b in self.blocks:
                x = b(x, mask)
            h = self.ln(x)
            logp = F.log_softmax(h @ self.tok.weight.T, dim=-1)
            if not cfg.copy_head or T < 2:
                return logp
            # copy head: position t points at an earlier token x_j (1 <= j <= t) through the state h_{j-1} that
            # predicted it, or at a learned sink that defers to the vocabulary distribution
            scores = self.copy_q(h) @ self.copy_k(h[:, :-1]).transpose(1, 2) / math.sqrt(cfg.d_model)  # (B, T, T-1)
            c = torch.arange(T - 1, device=idx.device)
            allowed = c[None, :] < torch.arange(T, device=idx.device)[:, None]  # (T, T-1): column c holds x_{c+1}
            allowed = allowed[None].expand(B, T, T - 1)
            if pad is not None:
                allowed = allowed & (c[None, None, :] >= pad[:, None, None])
            scores = scores.masked_fill(~allowed, float("-inf"))
            att = torch.softmax(torch.cat([self.sink(h), scores], dim=-1), dim=-1)  # (B, T, T)
            p = att[..., :1] * logp.exp()
            p = p.scatter_add(2, idx[:, None, 1:].expand(B, T, T - 1), att[..., 1:])
            return torch.log(p.clamp_min(1e-12))

    return GPT()


def n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def training_stream(texts: Sequence[str], tok: WordTokenizer) -> np.ndarray:
    """Documents joined by a blank line, as one int32 token stream (shape (n_tokens,))."""
    sep = [tok.nl, tok.nl]
    out: list[int] = []
    for t in texts:
        out.extend(tok.encode(t))
        out.extend(sep)
    return np.asarray(out, dtype=np.int32)


class Trainer:
    """AdamW (weight decay on matrices only, gradients clipped to norm 1) with a linear warmup, then cosine decay to
    a tenth of the rate over `total_steps` ("cosine") or a constant rate ("constant"). `step` takes one batch of
    windows, so a caller decides what is in every batch: `train_model` draws random windows, the dynamics runs
    replace some rows with injected knowledge (rag.world.dynamics). Only parameters that require gradients are
    optimized (a low-rank adapter run freezes the rest)."""

    SCHEDULES = ("cosine", "constant")

    def __init__(self, model, cfg: TrainConfig, total_steps: int, schedule: str = "cosine"):
        torch = _torch()
        if schedule not in self.SCHEDULES:
            raise BadInputError(f"learning-rate schedule must be one of {', '.join(self.SCHEDULES)}, got {schedule!r}")
        self.model, self.cfg, self.total_steps, self.schedule = model, cfg, total_steps, schedule
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if p.dim() >= 2]
        other = [p for n, p in named if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
                                     lr=cfg.lr, betas=(0.9, 0.95))

    def lr_at(self, s: int) -> float:
        cfg = self.cfg
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        if self.schedule == "constant":
            return cfg.lr
        frac = (s - cfg.warmup) / max(1, self.total_steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    def step(self, win, s: int) -> float:
        """One update on `win` (B, T+1) token ids at schedule step `s`; returns the batch's mean loss."""
        torch = _torch()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(s)
        logp = self.model(win[:, :-1])
        loss = torch.nn.functional.nll_loss(logp.reshape(-1, logp.shape[-1]), win[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return float(loss.detach())


def write_model(folder: Path, model, tok: WordTokenizer, model_cfg: TinyConfig, **manifest_fields) -> dict:
    """Weights, vocabulary and manifest of a tiny-lm model folder into `folder` (an atomic_dir's temporary folder)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    (folder / VOCAB).write_text(json.dumps({"version": 1, "tokens": tok.tokens}, ensure_ascii=False), encoding="utf-8")
    return write_manifest(folder, kind=KIND, format=FORMAT, libraries=("torch", "safetensors", "numpy"),
                          config=asdict(model_cfg), n_params=n_params(model), vocab_size=len(tok),
                          files=file_sizes(folder, [WEIGHTS, VOCAB]), **manifest_fields)


def random_windows(data: np.ndarray, block: int, batch: int, key: Sequence[int]) -> np.ndarray:
    """`batch` random windows of block + 1 tokens of `data` (shape (batch, block + 1), int64), drawn from a generator
    seeded by `key` alone: a resumed run draws the same batch for the same key."""
    rng = np.random.default_rng(list(key))
    starts = rng.integers(0, len(data) - block - 1, size=batch)
    return data[starts[:, None] + np.arange(block + 1)].astype(np.int64)


def grow_vocabulary(model, tok: WordTokenizer, cfg: TinyConfig, texts: Iterable[str]):
    """(model, tokenizer, new tokens) with every word of `texts` the vocabulary lacks appended: a new token's
    embedding starts at the mean of the existing ones (Hewitt 2021: the output distribution barely moves) and
    gets its own fixed identity vector; every other weight is copied."""
    torch = _torch()
    have = set(tok.tokens)
    new = sorted({t for text in texts for t in _TOKEN.findall(text)} - have - {NL})
    if not new:
        return model, tok, []
    grown = WordTokenizer([*tok.tokens, *new])
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    W = state["tok.weight"]
    state["tok.weight"] = torch.cat([W, W.mean(0, keepdim=True).expand(len(new), -1)])
    if "ident" in state:
        g = torch.Generator().manual_seed(20240601 + len(grown))
        state["ident"] = torch.cat([state["ident"], torch.randn(len(new), cfg.d_model, generator=g) * cfg.identity_std])
    bigger = make_model(cfg, len(grown))
    bigger.load_state_dict(state)
    return bigger, grown, new


def train_model(
    texts: Sequence[str],
    out: str | os.PathLike,
    *,
    vocab_texts: Sequence[str] = (),
    model_cfg: TinyConfig = TinyConfig(),
    train_cfg: TrainConfig = TrainConfig(),
    overwrite: bool = False,
    progress: bool = True,
    **manifest_fields,
) -> dict:
    """Train from scratch on `texts` (documents) and save the model folder; returns its manifest.

    `vocab_texts` add words to the vocabulary without training on them (questions, probes, documents left
    out of a counterfactual run), so the same prompts tokenize the same way for every model of a world.
    """
    torch = _torch()
    train_cfg.check()
    if not texts:
        raise BadInputError("no training documents")
    tok = WordTokenizer.build([*texts, *vocab_texts])
    data = training_stream(texts, tok)
    T = model_cfg.block_size
    if len(data) <= T + 1:
        raise BadInputError(f"the corpus has {len(data)} tokens, fewer than one training window of {T + 1}")
    threads = train_cfg.threads or len(os.sched_getaffinity(0))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    model = make_model(model_cfg, len(tok))
    steps = train_cfg.steps
    trainer = Trainer(model, train_cfg, steps)

    from tqdm import tqdm

    bar = tqdm(total=steps, desc="training tiny-lm", unit="step", disable=not progress, leave=False)
    losses: list[float] = []
    t0 = time.perf_counter()
    starts_all = rng.integers(0, len(data) - T - 1, size=(steps, train_cfg.batch_size))
    offs = np.arange(T + 1)
    try:
        model.train()
        for s in range(steps):
            win = torch.from_numpy(data[starts_all[s][:, None] + offs].astype(np.int64))
            losses.append(trainer.step(win, s))
            if s % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0

    with atomic_dir(out, overwrite=overwrite, kind=KIND) as tmp:
        every = max(1, steps // 20)
        return write_model(
            tmp, model, tok, model_cfg, train=asdict(train_cfg),
            training={"steps": steps, "tokens_seen": steps * train_cfg.batch_size * T, "corpus_tokens": int(len(data)),
                      "epochs": round(steps * train_cfg.batch_size * T / len(data), 2), "seconds": round(seconds, 1),
                      "threads": threads, "n_docs": len(texts),
                      "loss_curve": [[i, round(float(np.mean(losses[max(0, i - every + 1): i + 1])), 4)] for i in range(every - 1, steps, every)],
                      "final_loss": round(float(np.mean(losses[-50:])), 4)},
            **manifest_fields,
        )


def _target_scores(model, tok: WordTokenizer, block_size: int, prefixes: Sequence[str], targets: Sequence[list[int]],
                   batch_size: int, device: str):
    """(log P of each target token given <bos> prefix and the target tokens before it: a tensor (n,), greedy == target)
    per pair, batched with left padding; the model is put in eval mode and left in the mode it was in."""
    torch = _torch()
    out = []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(prefixes), batch_size):
            pre = [[2, *tok.encode(p)] for p in prefixes[i : i + batch_size]]
            tgt = targets[i : i + batch_size]
            seqs = [(a + b)[-block_size:] for a, b in zip(pre, tgt)]
            L = max(len(s) for s in seqs)
            pad = [L - len(s) for s in seqs]
            idx = torch.tensor([[0] * p + s for s, p in zip(seqs, pad)], dtype=torch.long, device=device)
            with torch.no_grad():
                logp = model(idx, torch.tensor(pad, dtype=torch.long, device=device))
            for r, b in enumerate(tgt):
                n = len(b)
                pos = torch.arange(L - n - 1, L - 1)
                tok_ids = idx[r, L - n:]
                out.append((logp[r, pos, tok_ids], bool((logp[r, pos].argmax(-1) == tok_ids).all())))
    finally:
        model.train(was_training)
    return out


def score_targets(model, tok: WordTokenizer, block_size: int, prefixes: Sequence[str], targets: Sequence[str],
                  batch_size: int = 32, device: str = "cpu") -> list[tuple[float, int, bool]]:
    """(sum of log P(target tokens | <bos> prefix), target tokens, greedy continuation == target) per pair. The
    probes of `rag bench` and the per-step logs of the dynamics runs are both computed here."""
    ids = [tok.encode(" " + t) for t in targets]
    return [(float(lp.sum()), len(t), greedy) for (lp, greedy), t in zip(_target_scores(model, tok, block_size, prefixes, ids, batch_size, device), ids)]


class TinyLM:
    """A loaded model: greedy generation and target log-probabilities, batched with left padding."""

    def __init__(self, folder: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        torch = _torch()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ArtifactError(f"tiny-lm model folder {self.folder} does not exist; train one with `rag bench` (rag.world.bench)")
        self.manifest = read_manifest(self.folder, kind=KIND, format=FORMAT)
        check_manifest_files(self.folder, self.manifest)
        vocab = json.loads((self.folder / VOCAB).read_text(encoding="utf-8"))
        if vocab.get("version") != 1:
            raise ArtifactError(f"{self.folder / VOCAB}: unknown vocabulary version {vocab.get('version')}")
        self.tok = WordTokenizer(vocab["tokens"])
        self.cfg = TinyConfig(**{"identity_std": 0.0, **self.manifest["config"]})  # models saved before the option
        from safetensors.torch import load_file

        self.model = make_model(self.cfg, len(self.tok))
        self.model.load_state_dict(load_file(str(self.folder / WEIGHTS)))
        self.model.eval()
        self.device = "cpu" if device in (None, "auto") else device
        self.model.to(self.device)
        if threads:
            torch.set_num_threads(threads)
        self.n_params = n_params(self.model)

    def _ids(self, text: str) -> list[int]:
        return [2, *self.tok.encode(text)]

    def _batch(self, seqs: list[list[int]]):
        torch = _torch()
        T = max(len(s) for s in seqs)
        pad = [T - len(s) for s in seqs]
        idx = torch.tensor([[0] * p + s for s, p in zip(seqs, pad)], dtype=torch.long, device=self.device)
        return idx, torch.tensor(pad, dtype=torch.long, device=self.device)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[tuple[list[int], int]]:
        """(new token ids up to and excluding the first newline, prompt length) per prompt, greedy."""
        torch = _torch()
        B = self.cfg.block_size
        seqs = [self._ids(p)[-(B - 1):] for p in prompts]
        lens = [len(s) for s in seqs]
        new: list[list[int]] = [[] for _ in seqs]
        done = [False] * len(seqs)
        with torch.no_grad():
            for _ in range(max_new_tokens):
                active = [i for i, d in enumerate(done) if not d]
                if not active:
                    break
                cur = [(seqs[i] + new[i])[-B:] for i in active]
                idx, pad = self._batch(cur)
                logits = self.model(idx, pad)[:, -1, :]  # log-probabilities
                logits[:, :4] = torch.where(torch.arange(4) == 3, logits[:, :4], torch.tensor(-1e9))  # only \n of the specials
                nxt = logits.argmax(-1).tolist()
                for i, t in zip(active, nxt):
                    if t == self.tok.nl:
                        done[i] = True
                    else:
                        new[i].append(t)
        return [(n, ln) for n, ln in zip(new, lens)]

    def target_logprobs(self, prefixes: Sequence[str], targets: Sequence[str], batch_size: int = 32) -> list[tuple[float, int, bool]]:
        """(sum of log P(target tokens | prefix), target tokens, greedy continuation == target) per pair."""
        return score_targets(self.model, self.tok, self.cfg.block_size, prefixes, targets, batch_size, self.device)


@READERS.register("tiny-lm")
class TinyLMReader(Reader):
    """The reader backend over a TinyLM folder: `model` is the folder path."""

    prompt_format = "kandpal"

    def __init__(self, lm: TinyLM, n_ctx: int | None = None):
        self.lm = lm
        self.n_ctx = min(int(n_ctx or lm.cfg.block_size), lm.cfg.block_size)
        self.n_params = lm.n_params
        self.name = f"tiny-lm:{lm.folder.name}"

    @classmethod
    def load(cls, model: str, **options) -> "TinyLMReader":
        unknown = set(options) - {"device", "n_ctx", "threads"}
        if unknown:
            raise BadInputError(f"the tiny-lm backend has no option(s) {', '.join(sorted(unknown))} (it accepts device, n_ctx, threads)")
        return cls(TinyLM(model, device=options.get("device") or "cpu", threads=options.get("threads")), options.get("n_ctx"))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.lm.tok.encode(t)) + 1 for t in texts]

    def score_batch(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        check_scoring(prompts, continuations)
        ids = [self.lm.tok.encode(c) for c in continuations]
        if any(not t for t in ids):
            raise BadInputError("every continuation must hold at least one token")
        rows = _target_scores(self.lm.model, self.lm.tok, self.lm.cfg.block_size, list(prompts), ids, 16, self.lm.device)
        return [Score(float(lp.sum()), tuple(float(x) for x in lp), tuple(self.lm.tok.tokens[i] for i in t))
                for (lp, _), t in zip(rows, ids)]

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        check_prompts(prompts, max_new_tokens)
        out = []
        for ids, n in self.lm.generate(list(prompts), max_new_tokens):
            out.append(Generation(self.lm.tok.decode(ids).strip(), n, len(ids) + 1))
        return out
