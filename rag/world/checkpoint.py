"""Resumable training state: model, optimizer and random-generator state saved atomically every N steps, so a
run killed with kill -9 continues from its last checkpoint and computes exactly the numbers it would have computed
without the interruption (same seed and thread count). Tensors in safetensors, the rest in JSON; nothing is pickled.

    folder/
        latest.json                   {"version": 1, "step": s, "dir": "ckpt-<s>"}: replaced atomically, last
        ckpt-<s>/weights.safetensors  the model's state dict
        ckpt-<s>/optimizer.safetensors  AdamW state, "<parameter index>.<name>" -> tensor
        ckpt-<s>/rng.safetensors      torch's CPU generator state ("torch": uint8)
        ckpt-<s>/state.json           {"version": 1, "step", "param_groups", "extra"}

`train_steps` runs a phase of training through a rag.world.tinylm.Trainer with these checkpoints and a log of
one JSON line per update (folder/log.jsonl), cut back to the checkpoint's length on resume.

A checkpoint directory is complete before latest.json names it, so a kill at any moment leaves either the old
or the new checkpoint in force; directories latest.json does not name are leftovers and are removed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from rag.artifacts import read_json_file, write_json_atomic
from rag.errors import ArtifactError, BadInputError

log = logging.getLogger(__name__)

VERSION = 1
LATEST = "latest.json"
LOG = "log.jsonl"


def _json_groups(groups: list[dict]) -> list[dict]:
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in groups]


def save(folder: str | os.PathLike, step: int, model, opt, extra: dict | None = None) -> None:
    """Write checkpoint `step` of `model` and `opt` (a torch optimizer) into `folder`, then make it the latest."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step}"
    tmp = folder / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "weights.safetensors"))
    sd = opt.state_dict()
    save_file({f"{i}.{k}": v.detach().contiguous() for i, st in sd["state"].items() for k, v in st.items()},
              str(tmp / "optimizer.safetensors"))
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    write_json_atomic(tmp / "state.json", {"version": VERSION, "step": step, "param_groups": _json_groups(sd["param_groups"]),
                                           "extra": extra or {}})
    final = folder / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json_atomic(folder / LATEST, {"version": VERSION, "step": step, "dir": name})
    for p in folder.iterdir():
        if p.is_dir() and p.name != name:
            shutil.rmtree(p, ignore_errors=True)


def latest_step(folder: str | os.PathLike) -> int | None:
    p = Path(folder) / LATEST
    return int(read_json_file(p)["step"]) if p.exists() else None


def load(folder: str | os.PathLike, model, opt) -> dict | None:
    """Restore the latest checkpoint of `folder` into `model` and `opt` (and torch's generator); returns its
    {"step", "extra"}, or None when there is none."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / LATEST).exists():
        return None
    latest = read_json_file(folder / LATEST)
    d = folder / latest["dir"]
    state = read_json_file(d / "state.json")
    if state.get("version") != VERSION or latest.get("version") != VERSION:
        raise ArtifactError(f"{d}: checkpoint version {state.get('version')}, this rag reads {VERSION}; delete {folder} to start over")
    model.load_state_dict(load_file(str(d / "weights.safetensors")))
    flat = load_file(str(d / "optimizer.safetensors"))
    per_param: dict[int, dict] = {}
    for key, v in flat.items():
        i, name = key.split(".", 1)
        per_param.setdefault(int(i), {})[name] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in state["param_groups"]]
    opt.load_state_dict({"state": per_param, "param_groups": groups})
    torch.set_rng_state(load_file(str(d / "rng.safetensors"))["torch"])
    return {"step": int(state["step"]), "extra": state["extra"]}


def train_steps(folder: Path, model, trainer, n_steps: int, batch_of: Callable[[int], tuple], line_of: Callable,
                first_line: dict | None, every: int, sched_offset: int, progress: bool, desc: str,
                resume_from: Path | None = None) -> None:
    """Run updates 1..n_steps of one phase, appending line_of(u, loss, info) to folder/log.jsonl after update u,
    checkpointing every `every` updates (and after the last) into folder/ckpt. Resumes from folder/ckpt, else
    from `resume_from` (a finished phase's checkpoint: the model and optimizer it ended with)."""
    import torch
    from tqdm import tqdm

    ckpt = folder / "ckpt"
    state = load(ckpt, model, trainer.opt)
    logf = folder / LOG
    if state is None:
        if resume_from is not None and load(resume_from, model, trainer.opt) is None:
            raise BadInputError(f"{resume_from}: the phase this one continues has no checkpoint; rerun to rebuild it")
        start, size = 0, 0
    else:
        start, size = state["step"], int(state["extra"]["log_bytes"])
        log.info("%s: resuming after update %d", folder, start)
    with open(logf, "a+b") as f:
        f.truncate(size)  # lines written after the checkpoint are recomputed, identically
        f.seek(size)
        if start == 0 and first_line is not None:
            f.write((json.dumps(first_line) + "\n").encode())
        bar = tqdm(total=n_steps, initial=start, desc=desc, unit="step", disable=not progress, leave=False)
        model.train()
        try:
            for u in range(start + 1, n_steps + 1):
                win, info = batch_of(u)
                loss = trainer.step(torch.from_numpy(win), sched_offset + u - 1)
                f.write((json.dumps(line_of(u, loss, info)) + "\n").encode())
                if u % every == 0 or u == n_steps:
                    f.flush()
                    save(ckpt, u, model, trainer.opt, {"log_bytes": f.tell()})
                bar.update(1)
        finally:
            bar.close()
