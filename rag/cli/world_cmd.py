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
    composition) after every update. Writes OUT/measures.json and OUT/dynamics.md: local acquisition maxima,
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
