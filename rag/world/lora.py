"""Low-rank adapters (Hu et al. 2021, LoRA) for the tiny model's transformer blocks, merged back after training
so the result is an ordinary tiny-lm model folder.

    y = W x + (alpha / rank) * B (A x)      A: (rank, in) random, B: (out, rank) zeros, W frozen

Adapters go on every block's four linear maps (qkv, proj, fc, out). Everything else is frozen except the rows
of the token embedding listed in `train_rows` (words the vocabulary gained for the new documents, which have no
trained embedding at all); their gradient is masked so the other rows never move (train with weight decay 0:
AdamW's decoupled decay would shrink them).
"""
from __future__ import annotations

import math
from typing import Sequence

TARGETS = ("qkv", "proj", "fc", "out")


def _lora_linear(base, rank: int, alpha: float, generator):
    import torch

    nn = torch.nn

    class LoRALinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.A = nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features))
            self.B = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale

        def merged(self):
            with torch.no_grad():
                self.base.weight += self.scale * (self.B @ self.A)
            return self.base

    return LoRALinear()


def add_lora(model, rank: int, alpha: float, seed: int = 0, train_rows: Sequence[int] = ()) -> int:
    """Freeze `model`, put adapters on its blocks' linear maps and unfreeze the embedding rows `train_rows`;
    returns the number of trainable values."""
    import torch

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    n = 0
    for block in model.blocks:
        for name in TARGETS:
            lin = _lora_linear(getattr(block, name), rank, alpha, g)
            setattr(block, name, lin)
            n += lin.A.numel() + lin.B.numel()
    if len(train_rows):
        emb = model.tok.weight
        emb.requires_grad_(True)
        mask = torch.zeros(emb.shape[0], 1)
        mask[list(train_rows)] = 1.0
        model._lora_mask_hook = emb.register_hook(lambda grad: grad * mask)
        n += len(train_rows) * emb.shape[1]
    return n


def merge_lora(model) -> None:
    """Fold every adapter into its frozen weight and restore the plain model (same state-dict layout as before)."""
    for block in model.blocks:
        for name in TARGETS:
            lin = getattr(block, name)
            if hasattr(lin, "merged"):
                setattr(block, name, lin.merged())
    hook = getattr(model, "_lora_mask_hook", None)
    if hook is not None:
        hook.remove()
        del model._lora_mask_hook
    for p in model.parameters():
        p.requires_grad_(True)
