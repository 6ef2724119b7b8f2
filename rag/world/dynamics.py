"""`rag world dynamics`: how the tiny model acquires and forgets injected knowledge during training (Chang et al.
2024), under several conditions, with exact ground truth.

    world (no reading exercises) -> new entities with twins (rag.world.knowledge), split over three scenarios;
                     each name is mentioned, without facts, in `name_mentions` pretraining documents
    base-d<width>/   pretraining at the base batch size, no injection (shared by every condition of that width)
    <condition>/     the base continued: at injection updates u_i = 1 + i * interval, rows of the batch are replaced
                     by the scenario's texts (duplicate: the same text N times; paraphrase: N paraphrases; once:
                     the text at u_1 only), and every probe's target log-probability is logged after each update
                     of a window after each injection, log-spaced updates later on (DynamicsConfig.log_points)
    measures.json, dynamics.md, plots/   local acquisition maxima, effectivity, retention and its decay constant
                     (rag.world.measures) per condition, scenario and probe kind; learnability threshold over intervals

A condition fixes the batch size, the interval between injections and the width. Step counts are given at the
base batch size and scaled by base_batch / batch_size, so every condition sees the same number of tokens. The
learning rate is constant after warmup (a decaying rate would look like forgetting being slowed).

Every phase checkpoints model, optimizer and generator state (rag.world.checkpoint) every `checkpoint_every`
updates and draws its batches from (seed, phase, step) alone, so a run killed with kill -9 resumes at its last
checkpoint and writes byte-identical logs (same seed, same thread count).

Run folder (format 1):
    config.json  vocab.json  world/  items.jsonl  probes.jsonl  mentions.jsonl  base-d<w>/  <condition>/{log.jsonl, model/, manifest.json}
    measures.json  dynamics.md  plots/  manifest.json (when every condition of the run is finished)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.artifacts import MANIFEST, atomic_dir, export_files, read_json_file, write_json_atomic, write_manifest, write_text_atomic
from rag.errors import BadInputError
from rag.world import checkpoint
from rag.world.generator import CORPUS, DISTRACTORS, WorldParams, generate, open_world, read_jsonl, write_world
from rag.world.tinylm import TinyConfig, TrainConfig, WordTokenizer
from rag.world.dynamics_log import LOG, SCENARIOS, load_log  # noqa: F401 (load_log: re-exported)

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "world-dynamics"


@dataclass(frozen=True)
class Condition:
    """One training condition; steps are counted at the base batch size (scaled to keep tokens equal)."""

    name: str
    batch_size: int = 16
    interval: int = 32  # base-batch steps between two injections
    d_model: int = 64


@dataclass(frozen=True)
class DynamicsConfig:
    world: WorldParams = field(default_factory=lambda: WorldParams(n_reading_docs=0, n_nonce=0))
    model: TinyConfig = field(default_factory=lambda: TinyConfig(n_layer=2, n_head=4, d_model=64, block_size=128))
    conditions: tuple[Condition, ...] = (Condition("base"),)
    n_people: int = 4  # new entities per scenario
    n_orgs: int = 4
    # documents naming a new entity (or its twin) without any fact, in the pretraining corpus: the names are known
    # words when their facts arrive (as the fictional names of Chang et al. are made of known tokens); a word the
    # model never saw has an embedding that Adam drives through the softmax alone, and the first injection then
    # upsets every prediction made after that name
    name_mentions: int = 8
    injections: int = 10  # of the duplicate and paraphrase scenarios (once: 1)
    base_steps: int = 600  # pretraining before the first injection, at base_batch
    base_batch: int = 16
    tail: int = 320  # base-batch steps after the last injection
    window: int = 48  # base-batch steps searched for the local acquisition maximum after an injection
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.05
    checkpoint_every: int = 50  # updates
    seed: int = 0

    def __post_init__(self):
        def bad(msg):
            raise BadInputError(f"dynamics settings: {msg}")

        if not self.conditions:
            bad("at least one condition is needed")
        if self.name_mentions < 0:
            bad(f"name_mentions must be >= 0, got {self.name_mentions}")
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            bad(f"condition names must be unique, got {names}")
        for name in ("n_people", "n_orgs", "base_batch", "window", "warmup", "checkpoint_every"):
            if getattr(self, name) < (0 if name in ("n_people", "n_orgs") else 1):
                bad(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_people + self.n_orgs < 1:
            bad("each scenario needs at least one new entity")
        if self.injections < 1 or self.tail < 1 or self.base_steps <= self.warmup:
            bad(f"injections and tail must be >= 1 and base_steps > warmup, got {self.injections}, {self.tail}, {self.base_steps}")
        for c in self.conditions:
            if c.batch_size < 1 or c.interval < 1 or c.d_model < 8 or c.d_model % self.model.n_head:
                bad(f"condition {c.name}: batch size and interval must be >= 1, d_model a multiple of {self.model.n_head}")
            f = self.scale(c)
            for what, v in (("interval", c.interval), ("tail", self.tail), ("window", self.window)):
                if (v * self.base_batch) % c.batch_size or v * self.base_batch // c.batch_size < 1:
                    bad(f"condition {c.name}: {what} {v} base-batch steps is not a whole number of steps at batch "
                        f"{c.batch_size} (scale {f:g})")

    def scale(self, c: Condition) -> float:
        return self.base_batch / c.batch_size

    def steps(self, c: Condition, base_steps: int) -> int:
        return base_steps * self.base_batch // c.batch_size

    def schedule(self, c: Condition) -> tuple[list[int], int]:
        """(injection updates u_1..u_N, total updates U) of condition c, in its own steps."""
        iv = self.steps(c, c.interval)
        inj = [1 + i * iv for i in range(self.injections)]
        return inj, inj[-1] + self.steps(c, self.tail)

    def log_points(self, c: Condition, per_decade: int = 16) -> list[int]:
        """The updates after which every probe is logged: 0, every update of the window after each injection
        (and the one before it), updates log-spaced after the first and after the last injection, the one just
        before the next injection would have come, and the last."""
        from rag.world.measures import log_grid

        inj, U = self.schedule(c)
        w, iv = self.steps(c, self.window), self.steps(c, c.interval)
        pts = {0, U, min(U, inj[-1] - 1 + iv)}
        for u in inj:
            pts.update(range(u - 1, min(u + w, U + 1)))
        for origin in (inj[0], inj[-1]):
            n = max(2, int(per_decade * np.log10(max(U - origin, 1)))) if U > origin else 0
            pts.update(int(origin + t) for t in log_grid(U - origin, n))
        return sorted(pts)

    def model_for(self, c: Condition) -> TinyConfig:
        return replace(self.model, d_model=c.d_model)

    def train_cfg(self) -> TrainConfig:
        return TrainConfig(steps=self.base_steps, batch_size=self.base_batch, lr=self.lr, warmup=self.warmup,
                           weight_decay=self.weight_decay, seed=self.seed)


_SMALL_WORLD = WorldParams(n_people=40, n_orgs=14, n_cities=12, n_countries=5, max_count=200, n_distractor_docs=60,
                           n_reading_docs=0, n_nonce=0, n_demo_people=0)
PRESETS: dict[str, DynamicsConfig] = {
    # the evidence run (eval/results/world/dynamics/): < 30 min on 2 cores
    "paper": DynamicsConfig(conditions=(
        Condition("base"), Condition("batch128", batch_size=128), Condition("interval8", interval=8),
        Condition("interval128", interval=128), Condition("interval256", interval=256), Condition("wide", d_model=128))),
    # `rag bench --dynamics`: one condition on a small world, about a minute
    "quick": DynamicsConfig(world=_SMALL_WORLD, model=TinyConfig(n_layer=2, n_head=4, d_model=48, block_size=96),
                            conditions=(Condition("base", interval=16, d_model=48),), n_people=3, n_orgs=3, injections=5,
                            base_steps=200, tail=96, window=16, warmup=30),
}


def preset(name: str) -> DynamicsConfig:
    if name not in PRESETS:
        raise BadInputError(f"unknown dynamics preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def config_json(cfg: DynamicsConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def config_from_json(d: dict) -> DynamicsConfig:
    d = dict(d)
    return DynamicsConfig(world=WorldParams(**d.pop("world")), model=TinyConfig(**d.pop("model")),
                          conditions=tuple(Condition(**c) for c in d.pop("conditions")), **d)


# --- batches ---------------------------------------------------------------------------------------------


def pack_rows(seqs: Sequence[Sequence[int]], width: int) -> list[list[int]]:
    """Whole token sequences packed greedily, in order, into rows of at most `width` tokens."""
    rows: list[list[int]] = []
    for s in seqs:
        if len(s) > width:
            raise BadInputError(f"an injected text of {len(s)} tokens does not fit a training window of {width}")
        if rows and len(rows[-1]) + len(s) <= width:
            rows[-1].extend(s)
        else:
            rows.append(list(s))
    return rows


def make_batch(data: np.ndarray, block: int, batch: int, key: Sequence[int],
               inject: dict[str, list[list[int]]] | None = None) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Random windows (batch, block + 1) drawn from the generator seeded by `key` alone (so a resumed run draws
    the same), then the first rows replaced from the left by `inject`'s texts (scenario -> token sequences),
    packed per scenario. Returns the windows and the rows each scenario took."""
    from rag.world.tinylm import random_windows

    win = random_windows(data, block, batch, key)
    rows: dict[str, list[int]] = {}
    r = 0
    for scenario, seqs in (inject or {}).items():
        for packed in pack_rows(seqs, block + 1):
            if r >= batch:
                raise BadInputError(f"the injected knowledge needs more than the {batch} rows of a batch; inject fewer entities")
            win[r, : len(packed)] = packed
            rows.setdefault(scenario, []).append(r)
            r += 1
    return win, rows


# --- preparation ---------------------------------------------------------------------------------------


@dataclass
class Prepared:
    cfg: DynamicsConfig
    out: Path
    tok: WordTokenizer
    data: np.ndarray  # the world corpus as one token stream
    items: list[dict]  # {"scenario", "item": Item json, "texts": [N texts]}
    probes: list[dict]  # in log column order
    fingerprint: str

    def injections(self, i: int) -> dict[str, list[list[int]]]:
        """scenario -> token sequences injected at the i-th injection (0-based)."""
        nl = self.tok.nl
        out: dict[str, list[list[int]]] = {}
        for sc in SCENARIOS:
            if sc == "once" and i > 0:
                continue
            seqs = []
            for it in self.items:
                if it["scenario"] == sc:
                    text = it["texts"][i if sc == "paraphrase" else 0]
                    seqs.append(self.tok.encode(text) + [nl, nl])
            out[sc] = seqs
        return out


def _jsonl(path: Path, rows) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def prepare(cfg: DynamicsConfig, out: Path) -> Prepared:
    """The world, the injected items and their probes, the vocabulary: made once, reused by a resumed run."""
    from rag.world.knowledge import Item, WorldView, make_items, paraphrases, probes, vocabulary_texts
    from rag.world.tinylm import training_stream

    world = out / "world"
    if not (world / MANIFEST).exists():
        write_world(generate(cfg.world), world, overwrite=False)
    wm = open_world(world)
    docs = [d["text"] for d in read_jsonl(world / CORPUS)]
    if not (out / "probes.jsonl").exists():
        rng = np.random.default_rng([cfg.seed, 19])
        view = WorldView.open(world)
        items = make_items(view, len(SCENARIOS) * cfg.n_people, len(SCENARIOS) * cfg.n_orgs, rng)
        rows, prb = [], []
        for j, it in enumerate(items):  # people and organizations alternate over the scenarios
            sc = SCENARIOS[j % len(SCENARIOS)]
            rows.append({"scenario": sc, "item": it.to_json(), "texts": paraphrases(it, cfg.injections, "world", rng)})
            for p in probes(it, "world"):
                prb.append({"pid": len(prb), "scenario": sc, **p})
        mentions = [{"name": n, "text": DISTRACTORS[int(rng.integers(len(DISTRACTORS)))].format(e=n)}
                    for it in items for n in (it.name, it.twin) for _ in range(cfg.name_mentions)]
        tok = WordTokenizer.build([*docs, *vocabulary_texts(items)])
        write_json_atomic(out / "vocab.json", {"version": 1, "tokens": tok.tokens})
        _jsonl(out / "items.jsonl", rows)
        _jsonl(out / "mentions.jsonl", mentions)
        _jsonl(out / "probes.jsonl", prb)  # written last: its presence marks the preparation done
    tok = WordTokenizer(read_json_file(out / "vocab.json")["tokens"])
    items = read_jsonl(out / "items.jsonl")
    for it in items:
        Item.from_json(it["item"])  # a damaged file fails here, not mid-run
    mentions = [m["text"] for m in read_jsonl(out / "mentions.jsonl")]
    order = np.random.default_rng([cfg.seed, 20]).permutation(len(docs) + len(mentions))
    pool = [*docs, *mentions]
    data = training_stream([pool[i] for i in order], tok)
    return Prepared(cfg, out, tok, data, items, read_jsonl(out / "probes.jsonl"), wm["fingerprint"])


# --- training phases -------------------------------------------------------------------------------------


def _threads(threads: int):
    import torch

    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def _new_model(p: Prepared, c: Condition):
    import torch

    from rag.world.tinylm import Trainer, make_model

    torch.manual_seed(p.cfg.seed)
    model = make_model(p.cfg.model_for(c), len(p.tok))
    return model, Trainer(model, p.cfg.train_cfg(), p.cfg.base_steps, schedule="constant")


def train_base(p: Prepared, c: Condition, progress: bool) -> Path:
    """Pretraining without injection for condition c's width; returns its folder (its checkpoint is the start of
    every condition of that width)."""
    from rag.world.tinylm import write_model

    cfg = p.cfg
    folder = p.out / f"base-d{c.d_model}"
    if (folder / MANIFEST).exists():
        return folder
    folder.mkdir(exist_ok=True)
    model, trainer = _new_model(p, c)
    t0 = time.perf_counter()
    T = cfg.model.block_size
    checkpoint.train_steps(folder, model, trainer, cfg.base_steps,
           batch_of=lambda u: make_batch(p.data, T, cfg.base_batch, (cfg.seed, 0, u)),
           line_of=lambda u, loss, info: {"u": u, "loss": round(loss, 5)},
           first_line=None, every=cfg.checkpoint_every, sched_offset=0, progress=progress, desc=f"base d={c.d_model}")
    losses = [r["loss"] for r in read_jsonl(folder / LOG)]
    with atomic_dir(folder / "model", overwrite=True) as tmp:
        write_model(tmp, model, p.tok, cfg.model_for(c), train=asdict(cfg.train_cfg()),
                    training={"steps": cfg.base_steps, "final_loss": round(float(np.mean(losses[-50:])), 4)},
                    world={"fingerprint": p.fingerprint})
    write_manifest(folder, kind=f"{KIND}/base", format=FORMAT, d_model=c.d_model, steps=cfg.base_steps,
                   seconds_this_session=round(time.perf_counter() - t0, 1),
                   final_loss=round(float(np.mean(losses[-50:])), 4))
    return folder


def run_condition(p: Prepared, c: Condition, progress: bool = True, keep_checkpoints: bool = False) -> Path:
    """Continue the base of c's width under c, injecting, and logging every probe at cfg.log_points(c)."""
    from rag.world.tinylm import score_targets, write_model

    cfg = p.cfg
    folder = p.out / c.name
    if (folder / MANIFEST).exists():
        return folder
    base = train_base(p, c, progress)
    folder.mkdir(exist_ok=True)
    model, trainer = _new_model(p, c)
    inj, U = cfg.schedule(c)
    at = {u: i for i, u in enumerate(inj)}
    logged = set(cfg.log_points(c))
    T = cfg.model.block_size
    prefixes = [q["prefix"] for q in p.probes]
    targets = [q["target"] for q in p.probes]

    def probe_row() -> list[float]:
        return [round(lp, 5) for lp, _, _ in score_targets(model, p.tok, T, prefixes, targets, batch_size=512)]

    def batch_of(u: int):
        return make_batch(p.data, T, c.batch_size, (cfg.seed, 1, u), p.injections(at[u]) if u in at else None)

    def line_of(u: int, loss: float, rows: dict) -> dict:
        line = {"u": u, "loss": round(loss, 5)}
        if u in logged:
            line["lp"] = probe_row()
        if rows:
            line["rows"] = rows
        return line

    t0 = time.perf_counter()
    first = None
    if checkpoint.latest_step(folder / "ckpt") is None:
        checkpoint.load(base / "ckpt", model, trainer.opt)
        first = {"u": 0, "loss": None, "lp": probe_row()}
    checkpoint.train_steps(folder, model, trainer, U, batch_of, line_of, first, cfg.checkpoint_every, cfg.base_steps, progress,
           desc=f"dynamics {c.name}", resume_from=base / "ckpt")
    rows = [r.get("rows", {}) for r in read_jsonl(folder / LOG)]
    with atomic_dir(folder / "model", overwrite=True) as tmp:
        write_model(tmp, model, p.tok, cfg.model_for(c), condition=asdict(c), updates=U, world={"fingerprint": p.fingerprint})
    if not keep_checkpoints:
        shutil.rmtree(folder / "ckpt", ignore_errors=True)
    write_manifest(folder, kind=f"{KIND}/condition", format=FORMAT, condition=asdict(c), injections=inj, updates=U,
                   window=cfg.steps(c, cfg.window), interval=cfg.steps(c, c.interval),
                   tokens_per_update=c.batch_size * T,
                   rows_replaced={sc: sum(len(r.get(sc, [])) for r in rows) for sc in SCENARIOS},
                   seconds_this_session=round(time.perf_counter() - t0, 1))
    return folder


# --- the whole run ---------------------------------------------------------------------------------------


def run_dynamics(cfg: DynamicsConfig, out: str | os.PathLike, conditions: Sequence[str] | None = None,
                 overwrite: bool = False, progress: bool = True, threads: int = 0, keep_checkpoints: bool = False,
                 preset_name: str | None = None) -> dict:
    """Run (or resume) the conditions named (default: all) in `out`, then measure and report every finished one."""
    import torch

    from rag.locks import writer_lock

    out = Path(out)
    chosen = list(conditions or [c.name for c in cfg.conditions])
    unknown = [n for n in chosen if n not in {c.name for c in cfg.conditions}]
    if unknown:
        raise BadInputError(f"unknown condition(s) {', '.join(unknown)}; this preset has {', '.join(c.name for c in cfg.conditions)}")
    if overwrite and out.exists():
        if not (out / "config.json").exists() and any(out.iterdir()):
            raise BadInputError(f"{out} exists and is not a dynamics run folder; refusing to delete it (choose another --out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    mine = config_json(cfg)
    if (out / "config.json").exists():
        old = read_json_file(out / "config.json")
        if old != mine:
            diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
            raise BadInputError(f"{out} holds a dynamics run with other settings ({', '.join(diff)}); pass --overwrite to "
                                f"start afresh, or --out NEW_FOLDER")
    load0 = os.getloadavg()
    old_threads = torch.get_num_threads()
    with writer_lock(out):
        write_json_atomic(out / "config.json", mine)
        n_threads = _threads(threads)
        try:
            p = prepare(cfg, out)
            t0 = time.perf_counter()
            for c in cfg.conditions:
                if c.name in chosen:
                    run_condition(p, c, progress, keep_checkpoints)
            seconds = round(time.perf_counter() - t0, 1)
        finally:
            torch.set_num_threads(old_threads)
        from rag.world.dynamics_report import analyze

        summary = analyze(out, cfg)
        done = [c.name for c in cfg.conditions if (out / c.name / MANIFEST).exists()]
        if len(done) == len(cfg.conditions):
            write_manifest(out, kind=KIND, format=FORMAT, libraries=("torch", "safetensors", "numpy"), preset=preset_name,
                           config=mine, conditions=done, world={"fingerprint": p.fingerprint}, threads=n_threads,
                           seconds_this_session=seconds, load_average={"start": [round(x, 2) for x in load0],
                                                                       "end": [round(x, 2) for x in os.getloadavg()]},
                           files={"measures": "measures.json", "report": "dynamics.md"})
    return summary


def export_run(out: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the committable part of a dynamics run (no logs, models or checkpoints) to `dest`."""
    out, dest = Path(out), Path(dest)
    export_files(out, dest, ("measures.json", "dynamics.md", "config.json", MANIFEST), ("plots/*.png",))
    (dest / "plots").mkdir(exist_ok=True)
    conds = {}
    for m in sorted(out.glob(f"*/{MANIFEST}")):
        kind = read_json_file(m).get("kind", "")
        if kind.startswith(KIND):
            conds[m.parent.name] = read_json_file(m)
    write_json_atomic(dest / "conditions.json", conds)
    return dest
