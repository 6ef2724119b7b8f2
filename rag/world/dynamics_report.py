"""Measures, tables and plots of a `rag world dynamics` run folder (rag.world.dynamics writes the logs).

    measures.json   {"conditions": {name: {"setup", "groups": [{"scenario", "kind", "series", ...measures}]}},
                     "learnability": [...], "comparisons": {...}}
    dynamics.md     the section the world report includes
    plots/          logprob-<condition>.png (log-probability over updates, injections marked; Chang et al. Fig. 2),
                    retention-<condition>.png (retention against log steps with the fits; Figs. 4-5), conditions.png

Series: "paired" = item probe minus its twin's (the same sentence after a never-shown name): what the model
learned of this entity, free of the step-to-step swings every name shares; "raw" = the item probe's own
log-probability (the paper's measure); "twin" = the twins alone (no knowledge injected: the null).
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rag.artifacts import MANIFEST, read_json_file, write_json_atomic, write_text_atomic
from rag.world.dynamics_log import SCENARIOS, load_log
from rag.world.generator import read_jsonl
from rag.world.knowledge import KINDS
from rag.world.measures import measure

log = logging.getLogger(__name__)


def _pairs(probes: list[dict]) -> dict[tuple[str, str], tuple[list[int], list[int]]]:
    """(scenario, kind) -> (item probe columns, their twins' columns), aligned."""
    twin_of = {(q["kid"], q["kind"], q["relation"]): q["pid"] for q in probes if q["twin"]}
    out: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for q in probes:
        if not q["twin"]:
            a, b = out.setdefault((q["scenario"], q["kind"]), ([], []))
            a.append(q["pid"])
            b.append(twin_of[(q["kid"], q["kind"], q["relation"])])
    return out


def condition_measures(out: Path, cfg, c, probes: list[dict]) -> dict:
    u, L = load_log(out / c.name)
    inj, U = cfg.schedule(c)
    if not np.array_equal(u, cfg.log_points(c)):
        raise ValueError(f"{out / c.name}: the log holds other updates than the schedule's ({len(u)} rows, {u[0]}..{u[-1]})")
    window, interval = cfg.steps(c, cfg.window), cfg.steps(c, c.interval)
    m = read_json_file(out / c.name / MANIFEST)
    groups = []
    for (sc, kind), (a, b) in sorted(_pairs(probes).items(), key=lambda kv: (SCENARIOS.index(kv[0][0]), KINDS.index(kv[0][1]))):
        sc_inj = inj[:1] if sc == "once" else inj
        for series, X in (("paired", L[:, a] - L[:, b]), ("raw", L[:, a]), ("twin", L[:, b])):
            groups.append({"scenario": sc, "kind": kind, "series": series,
                           **measure(u, X, sc_inj, window, interval, seed=cfg.seed)})
    curves = {}
    for (sc, kind), (a, b) in _pairs(probes).items():
        curves[f"{sc}/{kind}"] = {"raw": L[:, a].mean(1) - L[0, a].mean(), "twin": L[:, b].mean(1) - L[0, b].mean(),
                                  "paired": (L[:, a] - L[:, b]).mean(1) - (L[0, a] - L[0, b]).mean()}
    setup = {"condition": asdict(c), "injections": inj, "updates": U, "window": window, "interval": interval,
             "tokens_per_update": m["tokens_per_update"], "rows_replaced": m["rows_replaced"],
             "seconds": m.get("seconds_this_session")}
    return {"setup": setup, "groups": groups, "_curves": curves, "_u": u}


def _group(res: dict, sc: str, kind: str, series: str = "paired") -> dict | None:
    return next((g for g in res["groups"] if g["scenario"] == sc and g["kind"] == kind and g["series"] == series), None)


def learnability(cfg, results: dict) -> list[dict]:
    """Per family of conditions that differ only in interval, per series (paired, raw), scenario and probe kind: the
    gain one interval after the last injection (just before the next would come), per interval; the threshold is
    the shortest interval from which on every longer one's 95% interval includes 0."""
    fams: dict[tuple[int, int], list] = {}
    for c in cfg.conditions:
        if c.name in results:
            fams.setdefault((c.batch_size, c.d_model), []).append(c)
    out = []
    for (bs, d), cs in fams.items():
        if len({c.interval for c in cs}) < 2:
            continue
        cs = sorted(cs, key=lambda c: c.interval)
        for series, sc, kind in ((se, sc, k) for se in ("paired", "raw") for sc in ("duplicate", "paraphrase") for k in KINDS):
            rows = []
            for c in cs:
                g = _group(results[c.name], sc, kind, series)
                if g is None:
                    continue
                gi = g.get("gain_one_interval_after") or g["final_gain"]
                rows.append({"condition": c.name, "interval": c.interval, "gain": gi, "final_gain": g["final_gain"]})
            if not rows:
                continue
            threshold = None
            for i in range(len(rows)):
                if all(r["gain"]["lo"] <= 0 for r in rows[i:]):
                    threshold = rows[i]["interval"]
                    break
            if threshold is None:
                reading = f"gain above 0 at every interval tested (up to {rows[-1]['interval']}): the threshold lies beyond"
            elif threshold == rows[0]["interval"]:
                reading = f"no gain above 0 at any interval tested (from {threshold}): not acquired at all"
            else:
                prev = rows[[r["interval"] for r in rows].index(threshold) - 1]["interval"]
                reading = f"no gain above 0 from interval {threshold} on: the threshold lies between {prev} and {threshold}"
            out.append({"batch_size": bs, "d_model": d, "series": series, "scenario": sc, "kind": kind, "rows": rows,
                        "threshold": threshold, "reading": reading})
    return out


def _fmt(s: dict | None, nd: int = 2) -> str:
    if not s:
        return "–"
    return f"{s['mean']:.{nd}f} [{s['lo']:.{nd}f}, {s['hi']:.{nd}f}]"


def _decay(g: dict | None) -> tuple[str, str, str]:
    if not g or "a" not in (g.get("decay") or {}):
        return "–", "–", "–"
    d = g["decay"]
    x0 = d.get("x_intercept")
    return f"{d['a']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]", f"{d['r2']:.2f}", ("–" if x0 is None else f"{x0:,.0f}")


def _table(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(str(x) for x in r) + " |" for r in rows)])


def write_markdown(out: Path, cfg, results: dict, learn: list[dict]) -> str:
    wm = read_json_file(out / "world" / MANIFEST)
    n_items = len(read_jsonl(out / "items.jsonl"))
    lines = ["## Knowledge acquisition and forgetting during training (Chang et al. 2024)", "",
             f"`rag world dynamics`: a {cfg.model.n_layer}-layer tiny GPT trained on a world of {wm['n_docs']:,} documents "
             f"({wm['n_facts']} facts) for {cfg.base_steps} steps at batch {cfg.base_batch} x {cfg.model.block_size} tokens, then "
             f"continued while rows of chosen batches are replaced by texts about {n_items} new entities "
             f"({n_items // 3} per scenario; each with a never-shown twin): **duplicate** (the same text at each of "
             f"{cfg.injections} injections), **paraphrase** ({cfg.injections} paraphrases), **once** (the first injection only). "
             f"Every probe's target log-probability is logged after each update of a window of {cfg.window} base steps after each "
             f"injection, at log-spaced updates later on. Measures on the paired series (item "
             f"minus twin: what was learned about that entity, without the swings every name shares); 95% bootstrap "
             f"intervals over the probed facts. Effectivity: log-probability gain of one injection at its local maximum "
             f"(window {cfg.window} base steps); decay constant a: retention ~ b - a ln t after the last injection (R²; "
             f"x-intercept exp(b/a) = steps until nothing is retained).", ""]
    lines += ["| condition | batch | interval (updates) | width | updates | tokens / update | rows replaced (dup / para / once) | seconds |",
              "|---|---|---|---|---|---|---|---|"]
    for c in cfg.conditions:
        if c.name not in results:
            continue
        s = results[c.name]["setup"]
        rr = s["rows_replaced"]
        lines.append(f"| {c.name} | {c.batch_size} | {s['interval']} | {c.d_model} | {s['updates']} | {s['tokens_per_update']:,} | "
                     f"{rr['duplicate']} / {rr['paraphrase']} / {rr['once']} | {s['seconds']} |")
    lines.append("")
    for c in cfg.conditions:
        if c.name not in results:
            continue
        res = results[c.name]
        rows = []
        for sc in SCENARIOS:
            for kind in KINDS:
                g = _group(res, sc, kind)
                if g is None:
                    continue
                a, r2, x0 = _decay(g)
                raw = _group(res, sc, kind, "raw")
                twin = _group(res, sc, kind, "twin")
                rows.append([sc, kind, g["n"], _fmt(g["effectivity"]), _fmt(g["effectivity_of_mean"]), _fmt(g["lam"]["gain"]),
                             _fmt(g["final_gain"]), a, r2, x0,
                             _fmt(raw["effectivity"]) if raw else "–", _decay(raw)[0], _fmt(twin["effectivity"]) if twin else "–"])
        lines += [f"### Condition `{c.name}`", "",
                  _table(["scenario", "probe", "facts", "effectivity", "effectivity of the mean curve", "gain at last LAM",
                          "final gain", "decay a", "R²",
                          "x-intercept (updates)", "raw effectivity", "raw decay a", "twin effectivity (null)"], rows), "",
                  f"![log-probability over updates](plots/logprob-{c.name}.png)", "",
                  f"![retention](plots/retention-{c.name}.png)", ""]
    if learn:
        lines += ["### Learnability threshold: the gain one interval after the last injection, by interval", "",
                  "Gain over the state before the first injection, measured where the next injection would have come; the "
                  "threshold is the shortest interval from which on no gain is above 0 (95% interval).", ""]
        rows = []
        for fam in learn:
            if fam["kind"] == "composition":
                continue
            for r in fam["rows"]:
                rows.append([fam["series"], f"{fam['scenario']} / {fam['kind']}", f"batch {fam['batch_size']}, d={fam['d_model']}",
                             r["interval"], _fmt(r["gain"]), _fmt(r["final_gain"])])
        lines += [_table(["series", "scenario / probe", "family", "interval (base steps)", "gain one interval after", "final gain"], rows), ""]
        for fam in learn:
            lines.append(f"- {fam['series']}, {fam['scenario']} / {fam['kind']} (batch {fam['batch_size']}, d={fam['d_model']}): {fam['reading']}.")
        lines.append("")
    lines += ["![conditions](plots/conditions.png)", "", "![retention by condition](plots/retention-conditions.png)", ""]
    text = "\n".join(lines)
    write_text_atomic(out / "dynamics.md", text)
    return text


def plot(out: Path, cfg, results: dict, learn: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plots are optional
        log.warning("matplotlib is not installed (pip install 'rag[plots]'); no dynamics plots")
        return
    from rag.world.measures import fit_decay

    (out / "plots").mkdir(exist_ok=True)
    colors = {"duplicate": "tab:red", "paraphrase": "tab:blue", "once": "tab:green"}
    for c in cfg.conditions:
        if c.name not in results:
            continue
        res = results[c.name]
        inj = res["setup"]["injections"]
        fig, axes = plt.subplots(2, 3, figsize=(14, 6.5), sharex=True)
        for j, kind in enumerate(KINDS):
            for sc in SCENARIOS:
                cur = res["_curves"].get(f"{sc}/{kind}")
                if cur is None:
                    continue
                x = res["_u"]
                axes[0, j].plot(x, cur["raw"], color=colors[sc], lw=0.8, label=sc)
                axes[0, j].plot(x, cur["twin"], color=colors[sc], lw=0.6, ls=":", alpha=0.7)
                axes[1, j].plot(x, cur["paired"], color=colors[sc], lw=0.8, label=sc)
            for ax in axes[:, j]:
                for k, u in enumerate(inj):
                    ax.axvline(u, color="gray", lw=0.5, alpha=0.5, ls="--" if k else "-")
                ax.grid(alpha=0.3)
            axes[0, j].set_title(f"{kind}: log-prob change (dotted: twins)")
            axes[1, j].set_title(f"{kind}: paired (item - twin) change")
            axes[1, j].set_xlabel("update")
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{c.name}: mean target log-probability over updates (grey lines: injections)")
        fig.tight_layout()
        fig.savefig(out / "plots" / f"logprob-{c.name}.png", dpi=100)
        plt.close(fig)

        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        for j, kind in enumerate(KINDS):
            ax = axes[j]
            for sc in SCENARIOS:
                g = _group(res, sc, kind)
                if not g or not g.get("retention"):
                    continue
                t, r = np.array(g["retention"]["t"]), np.array(g["retention"]["mean"])
                ax.plot(t, r, "o", ms=3, color=colors[sc], label=sc)
                d = g.get("decay") or {}
                if "a" in d:
                    a, b, _ = fit_decay(t, r)
                    ax.plot(t, b[0] - a[0] * np.log(t), color=colors[sc], lw=1,
                            label=f"a={d['a']:.2f}, R²={d['r2']:.2f}")
            ax.set_xscale("log")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"{kind}: retention after the last injection (paired)")
            ax.set_xlabel("updates after the local maximum")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "plots" / f"retention-{c.name}.png", dpi=100)
        plt.close(fig)

    names = [c.name for c in cfg.conditions if c.name in results]
    # retention of every condition on one axis per scenario, against tokens seen since the local maximum
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    cmap = plt.get_cmap("tab10")
    for j, sc in enumerate(SCENARIOS):
        ax = axes[j]
        for k, n in enumerate(names):
            g = _group(results[n], sc, "memorization")
            if not g or not g.get("retention"):
                continue
            tok = np.array(g["retention"]["t"]) * results[n]["setup"]["tokens_per_update"]
            d = g.get("decay") or {}
            label = f"{n} (a={d['a']:.2f})" if "a" in d else f"{n} (not acquired)"
            ax.plot(tok, g["retention"]["mean"], "-", lw=1, color=cmap(k % 10), label=label)
        ax.set_xscale("log")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("tokens trained on since the local maximum")
        ax.set_title(f"{sc}: retention, paired memorization")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "plots" / "retention-conditions.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    w = 0.25
    for k, sc in enumerate(SCENARIOS):
        for ax, key in ((axes[0], "effectivity"), (axes[1], "decay")):
            ys, los, his = [], [], []
            for n in names:
                g = _group(results[n], sc, "memorization") or {}
                s = g.get(key) or {}
                y = s.get("mean", s.get("a", np.nan))
                ys.append(y if y is not None else np.nan)
                los.append(y - s.get("lo", y) if "lo" in s else 0)
                his.append(s.get("hi", y) - y if "hi" in s else 0)
            x = np.arange(len(names)) + (k - 1) * w
            ax.bar(x, ys, w, yerr=[np.abs(los), np.abs(his)], color=colors[sc], label=sc, capsize=2)
    for ax, title in ((axes[0], "effectivity (paired memorization)"), (axes[1], "decay constant a (paired memorization)")):
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    ax = axes[2]
    for fam in learn:
        if fam["kind"] != "memorization" or fam["series"] != "paired":
            continue
        xs = [r["interval"] for r in fam["rows"]]
        ys = np.array([r["gain"]["mean"] for r in fam["rows"]])
        err = [ys - np.array([r["gain"]["lo"] for r in fam["rows"]]), np.array([r["gain"]["hi"] for r in fam["rows"]]) - ys]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colors[fam["scenario"]],
                    label=f"{fam['scenario']} (batch {fam['batch_size']}, d={fam['d_model']})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("interval between injections (base steps)")
    ax.set_title("gain one interval after the last injection")
    ax.grid(alpha=0.3)
    if learn:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "plots" / "conditions.png", dpi=100)
    plt.close(fig)


def _finite(x):
    """NaN and infinities as null: measures.json stays strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def analyze(out: str | Path, cfg) -> dict:
    """measures.json, dynamics.md and plots/ from every finished condition of the run in `out`."""
    out = Path(out)
    probes = read_jsonl(out / "probes.jsonl")
    results = {}
    for c in cfg.conditions:
        if (out / c.name / MANIFEST).exists():
            results[c.name] = condition_measures(out, cfg, c, probes)
    learn = learnability(cfg, results)
    plot(out, cfg, results, learn)
    clean = {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in results.items()}
    summary = {"conditions": clean, "learnability": learn}
    write_json_atomic(out / "measures.json", _finite(summary))
    write_markdown(out, cfg, results, learn)
    return summary
