"""`rag world`: experiments on a generated world that need training runs (knowledge dynamics, injection)."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("world")
def world() -> None:
    """Training-time experiments on a generated fictional world (exact ground truth, CPU, minutes)."""


@world.command("dynamics")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/dynamics"), show_default=True,
              help="Run folder. Rerunning with the same folder resumes (after kill -9 too) and reuses finished conditions.")
@click.option("--preset", "preset_name", default="paper", show_default=True,
              help="Named set of conditions: paper (the evidence run, < 30 min on 2 cores) or quick (~1-2 min).")
@click.option("--condition", "conditions", multiple=True,
              help="Run only this condition of the preset (repeatable); the report covers every finished one.")
@click.option("--seed", type=int, default=None, help="Seed of the world, the injected knowledge and the training (default: the preset's).")
@click.option("--threads", type=int, default=0, show_default=True,
              help="Torch threads (0: every core). Logs are identical for the same seed and thread count.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep each condition's last training checkpoint (model, optimizer, generator state).")
@click.option("--export", type=click.Path(path_type=Path), default=None,
              help="Also copy the committable part (measures.json, dynamics.md, plots, config, manifests) to this folder.")
@click.option("--overwrite", is_flag=True, help="Delete the run folder and start afresh.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
def dynamics(out, preset_name, conditions, seed, threads, keep_checkpoints, export, overwrite, progress) -> None:
    """How the tiny model acquires and forgets knowledge injected into its training batches (Chang et al. 2024).

    Trains a tiny GPT on a generated world, then continues training while rows of chosen batches are replaced
    by texts about new entities in three scenarios (duplicate: the same text N times at a fixed interval;
    paraphrase: N paraphrases; once), logging every probe's target log-probability (memorization, semantic,
    composition) after each update of a window after each injection (log-spaced later). Writes OUT/measures.json and OUT/dynamics.md: local acquisition maxima,
    effectivity, retention and its decay constant (fit against log steps, with R²), per condition (batch size,
    interval between injections, width), scenario and probe kind, with bootstrap intervals over the facts, and
    the learnability threshold over intervals; plots in OUT/plots/.
    """
    from dataclasses import replace

    from rag.world.dynamics import preset, run_dynamics

    cfg = preset(preset_name)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    run_dynamics(cfg, out, conditions=list(conditions) or None, overwrite=overwrite, progress=progress, threads=threads,
                 keep_checkpoints=keep_checkpoints, preset_name=preset_name)
    if export is not None:
        from rag.world.dynamics import export_run

        export_run(out, export)
    click.echo((Path(out) / "dynamics.md").read_text(encoding="utf-8"))


@world.command("inject")
@click.option("--world", "world_dir", type=click.Path(path_type=Path), required=True,
              help="A world folder (e.g. runs/bench/world).")
@click.option("--model", type=click.Path(path_type=Path), required=True,
              help="A tiny-lm model trained on that world (e.g. runs/bench/model).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/inject"), show_default=True,
              help="Run folder. Rerunning with the same folder resumes (after kill -9 too).")
@click.option("--people", type=int, default=16, show_default=True, help="New person entities taught and asked about.")
@click.option("--orgs", type=int, default=8, show_default=True, help="New organizations taught and asked about.")
@click.option("--heldout", type=int, default=12, show_default=True,
              help="Further new entities in the same style, never trained on (their texts measure perplexity).")
@click.option("--docs", "docs_per_entity", type=int, default=3, show_default=True, help="Documents (paraphrases) per new entity.")
@click.option("--style", type=click.Choice(["archive", "world"]), default="archive", show_default=True,
              help="archive: a register the world never uses; world: the world's own templates (FAQ lines included).")
@click.option("--epochs", type=float, default=10.0, show_default=True, help="Passes over the new documents when training.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate of full-weight training.")
@click.option("--lora/--no-lora", default=True, show_default=True, help="Also train low-rank adapters (merged afterwards).")
@click.option("--lora-rank", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, show_default=True, help="Torch threads (0: every core).")
@click.option("--export", type=click.Path(path_type=Path), default=None,
              help="Also copy the committable part (inject.json, inject.md, results without models) to this folder.")
@click.option("--overwrite", is_flag=True, help="Delete the run folder and start afresh.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
def inject(world_dir, model, out, people, orgs, heldout, docs_per_entity, style, epochs, lr, lora, lora_rank, seed, threads,
           export, overwrite, progress) -> None:
    """Teach a trained world model new facts by further training, or supply them by retrieval, and compare.

    Generates new entities with facts about the world's entities (documents in the chosen style and one
    question per fact), then (a) trains the model further on the new documents, every weight and with
    low-rank adapters, and (b) answers with retrieval over an index holding the world's corpus and the new
    documents, without training. Writes OUT/inject.md and OUT/inject.json: for each method EM and gold
    log-probability on the new facts and on the old ones (forgetting), and perplexity on held-out text in the
    new style (style learned without the facts: perplexity falls while EM stays low).
    """
    from rag.world.inject import InjectConfig, export_run, run_inject

    cfg = InjectConfig(n_people=people, n_orgs=orgs, n_heldout=heldout, docs_per_entity=docs_per_entity, style=style,
                       epochs=epochs, lr=lr, lora=lora, lora_rank=lora_rank, seed=seed)
    run_inject(cfg, world_dir, model, out, overwrite=overwrite, progress=progress, threads=threads)
    if export is not None:
        export_run(out, export)
    click.echo((Path(out) / "inject.md").read_text(encoding="utf-8"))
