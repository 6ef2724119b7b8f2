"""Fault injection against the real `rag` CLI (issue 18): kill -9 at random points, a full disk, files damaged in
place, two writers on one output. Shared by tests/integration/test_fault_injection.py (a few faults) and
eval/bench_reliability.py (hundreds).

Every fault ends in one outcome (OUTCOMES):
    refused clearly      a one-line error naming the problem (exit 2), or `rag verify` reports the damaged file
    resumed identically  the same command, run again, finishes with output identical to an uninterrupted build
    silent wrong         a command succeeded on damaged input, or produced output that differs from the reference
    data lost            the command cannot be completed by rerunning it, or a finished output was destroyed

A full disk is simulated with RLIMIT_FSIZE in the child (writes past the limit fail with EFBIG; SIGXFSZ is
ignored so they raise OSError): mounting a tmpfs needs root, which these machines do not give.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("refused clearly", "resumed identically", "silent wrong", "data lost")
REFUSED, RESUMED, SILENT, LOST = OUTCOMES


@dataclass
class Fault:
    kind: str  # kill -9 / disk full / corrupt / concurrent
    target: str  # which command or file
    seed: int
    outcome: str
    detail: str = ""


def rag_cmd(*args) -> list[str]:
    """The worktree's CLI (cli.py puts this checkout first on sys.path)."""
    return [sys.executable, str(ROOT / "cli.py"), *map(str, args)]


def run(args: list[str], timeout: float = 300, fsize: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env(),
                          preexec_fn=_limit(fsize) if fsize else None)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _limit(fsize: int):
    def f():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return f


def one_line_error(p: subprocess.CompletedProcess) -> bool:
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith(("INFO ", "WARNING "))]
    return p.returncode == 2 and bool(lines) and lines[-1].startswith("error: ") and "Traceback" not in p.stderr


# --- the world the commands work on -----------------------------------------------------------------------------


def make_inputs(folder: Path, n_docs: int = 300, seed: int = 0) -> None:
    """docs.jsonl (n_docs documents of ~150 words naming towns) and qa.jsonl (20 questions about the towns)."""
    rng = random.Random(seed)
    towns = [f"Town{i}" for i in range(30)]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "docs.jsonl", "w") as f:
        for i in range(n_docs):
            a, b = rng.choice(towns), rng.choice(towns)
            words = " ".join(f"w{rng.randrange(500)}" for _ in range(150))
            f.write(json.dumps({"id": f"d{i}", "title": f"Doc {i}", "text": f"{a} is near {b}. {words}"}) + "\n")
    with open(folder / "qa.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"question": f"What is near {towns[i]}?", "answers": [towns[(i + 1) % 30]]}) + "\n")
    (folder / "eval.yaml").write_text(json.dumps({
        "name": "faults", "qa": {"path": str(folder / "qa.jsonl")}, "counts": str(folder / "ref" / "counts"),
        "reader": {"model": "fake", "backend": "fake"},
        "retrievers": [{"name": "bm25", "index": str(folder / "ref" / "bm25")},
                       {"name": "dense", "index": str(folder / "ref" / "dense")}],
        "k": 2, "recall_ks": [1, 5], "batch_size": 2, "n_boot": 50,
    }))


def commands(inp: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    """kind -> (command, its output folder). Indexes, counts and runs read the reference store / indexes."""
    ref = inp / "ref"
    return {
        "corpus": (rag_cmd("corpus", "build", inp / "docs.jsonl", "--out", out / "passages", "--words", 50,
                           "--no-progress"), out / "passages"),
        "bm25": (rag_cmd("index", "build", "--passages", ref / "passages", "--kind", "bm25", "--out", out / "bm25"),
                 out / "bm25"),
        "dense": (rag_cmd("index", "build", "--passages", ref / "passages", "--kind", "dense", "--encoder", "hash:32",
                          "--factory", "Flat", "--chunk-size", 64, "--out", out / "dense"), out / "dense"),
        "hybrid": (rag_cmd("index", "build", "--passages", ref / "passages", "--kind", "hybrid", "--members",
                           f"{ref / 'bm25'},{ref / 'dense'}", "--out", out / "hybrid"), out / "hybrid"),
        "counts": (rag_cmd("counts", "build", "--passages", ref / "passages", "--qa", inp / "qa.jsonl", "--out",
                           out / "counts", "--workers", 1), out / "counts"),
        "eval": (rag_cmd("eval", "run", "--config", inp / "eval.yaml", "--out", out / "run", "--no-progress"),
                 out / "run"),
    }


def build_reference(inp: Path) -> dict[str, float]:
    """Every output built once, uninterrupted, under inp/ref; returns each command's seconds."""
    seconds = {}
    for kind, (cmd, out) in commands(inp, inp / "ref").items():
        t = time.perf_counter()
        p = run(cmd)
        if p.returncode != 0:
            raise RuntimeError(f"reference {kind} failed: {p.stderr[-2000:]}")
        seconds[kind] = time.perf_counter() - t
    return seconds


# --- comparing outputs ------------------------------------------------------------------------------------------

# differ between two identical builds: times, speeds, paths, machine details (a run's config.yaml holds its --out);
# a resumed run appends its records in another order, so records.jsonl is compared as a multiset, not by its hash
VOLATILE = {"created", "build_seconds", "build", "libraries", "path", "abspath", "relpath", "code", "status",
            "config.yaml", "records.jsonl", "passages_per_second"}


def content(folder: Path) -> dict:
    """What must be identical between a build and the reference: every file's sha256 (run folders: the records as a
    sorted multiset; timing and reports aside), manifests without times, paths and machine details."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if p.name == "manifest.json":
            out[rel] = _strip(json.loads(p.read_text()))
        elif p.name == "records.jsonl":
            out[rel] = sorted(json.dumps(json.loads(x), sort_keys=True) for x in p.read_text().splitlines() if x.strip())
        elif p.name in ("timing.json", "config.yaml") or p.suffix in (".png", ".md", ".html"):
            continue  # times, and the output path written into the resolved config
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE and not k.endswith(("seconds", "per_second"))}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def same_as_reference(out: Path, ref: Path) -> tuple[bool, str]:
    a, b = content(out), content(ref)
    if a == b:
        return True, ""
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return False, f"differs from the reference in {', '.join(diff[:4])}"


# --- faults -----------------------------------------------------------------------------------------------------


def kill_fault(inp: Path, work: Path, kind: str, seed: int, ref_seconds: float) -> Fault:
    """Start the command, SIGKILL it after a seeded random delay, check nothing finished is wrong, run it again."""
    cmd, out = commands(inp, work)[kind]
    delay = random.Random(seed).uniform(0.05, max(0.2, ref_seconds * 1.1))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    detail = f"killed after {delay:.2f} s"
    ref = inp / "ref" / out.name
    if out.exists() and kind != "eval":  # finished before the kill: it must be whole and right
        ok, why = same_as_reference(out, ref)
        if not ok:
            return Fault("kill -9", kind, seed, SILENT, f"{detail}; the finished output {why}")
    p = run(cmd)
    if p.returncode != 0:
        if "already exists" in p.stderr and out.exists():
            ok, why = same_as_reference(out, ref)
            return Fault("kill -9", kind, seed, RESUMED if ok else SILENT, f"{detail}; finished before the kill {why}")
        return Fault("kill -9", kind, seed, LOST, f"{detail}; rerun failed: {p.stderr.strip().splitlines()[-1:]}")
    ok, why = same_as_reference(out, ref)
    if not ok:
        return Fault("kill -9", kind, seed, SILENT, f"{detail}; rerun {why}")
    v = run(rag_cmd("verify", out))
    if v.returncode != 0:
        return Fault("kill -9", kind, seed, SILENT, f"{detail}; rerun output fails rag verify: {v.stdout[-300:]}")
    return Fault("kill -9", kind, seed, RESUMED, detail)


def disk_full_fault(inp: Path, work: Path, kind: str, seed: int, limit: int) -> Fault:
    """The command with a file-size limit of `limit` bytes (a full disk): a one-line error and nothing half-written
    taken for done; then, without the limit, the same command finishes identically."""
    cmd, out = commands(inp, work)[kind]
    p = run(cmd, fsize=limit)
    detail = f"RLIMIT_FSIZE {limit:,} B"
    if p.returncode == 0:
        ok, why = same_as_reference(out, inp / "ref" / out.name)
        if not ok:
            return Fault("disk full", kind, seed, SILENT, f"{detail}; succeeded but {why}")
        first = REFUSED  # every file fitted under the limit: nothing to refuse
        detail += "; every file fitted under the limit"
    elif one_line_error(p):
        first = REFUSED
        detail += f"; {p.stderr.strip().splitlines()[-1][:160]}"
    else:
        return Fault("disk full", kind, seed, SILENT, f"{detail}; not a one-line error (exit {p.returncode}): "
                                                      f"{p.stderr[-400:]}")
    if out.exists() and p.returncode != 0 and kind != "eval":
        return Fault("disk full", kind, seed, SILENT, f"{detail}; failed but left {out}")
    p2 = run(cmd)
    if p2.returncode != 0 and not ("already exists" in p2.stderr and out.exists()):
        return Fault("disk full", kind, seed, LOST, f"{detail}; rerun failed: {p2.stderr[-300:]}")
    ok, why = same_as_reference(out, inp / "ref" / out.name)
    return Fault("disk full", kind, seed, first if ok else SILENT, detail + ("" if ok else f"; rerun {why}"))


# artifact -> (files that may be damaged, the command that loads it)
def loaders(inp: Path, copy: Path) -> dict[str, list[str]]:
    ref = inp / "ref"
    search = lambda idx, passages: rag_cmd("search", "Town3 w17", "--index", idx, "--passages", passages)  # noqa: E731
    return {
        "passages": search(ref / "bm25", copy / "passages"),
        "bm25": search(copy / "bm25", ref / "passages"),
        "dense": search(copy / "dense", ref / "passages"),
        "counts": rag_cmd("eval", "run", "--config", inp / "eval.yaml", "--set", f"counts={copy / 'counts'}", "--out",
                          copy / "run-on-counts", "--no-progress"),
        "run": rag_cmd("eval", "report", copy / "run", "--no-plots"),
    }


def artifact_files(inp: Path) -> list[tuple[str, str]]:
    """(artifact, file) for every file of every reference artifact, manifests included."""
    ref = inp / "ref"
    out = []
    for art in ("passages", "bm25", "dense", "counts", "run"):
        for p in sorted((ref / art).rglob("*")):
            if p.is_file() and not p.name.endswith((".png", ".md", ".csv", ".html")) and p.name not in (
                    "timing.json", "adaptive.json", "trends.json"):
                out.append((art, p.relative_to(ref / art).as_posix()))
    return out


def corrupt(path: Path, seed: int) -> str:
    """Damage `path` in place at equal size: a zeroed block in the middle, or a few flipped bytes at seeded offsets."""
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    if not data:
        return "empty file, left alone"
    if rng.random() < 0.5:
        n = min(4096, max(1, len(data) // 8))
        at = max(0, len(data) // 2 - n // 2)
        data[at : at + n] = bytes(n) if any(data[at : at + n]) else b"\xff" * n
        how = f"{n} bytes zeroed at {at}"
    else:
        offs = sorted(rng.randrange(len(data)) for _ in range(rng.randint(1, 4)))
        for o in offs:
            data[o] ^= 1 << rng.randrange(8)
        how = f"bits flipped at {offs}"
    path.write_bytes(bytes(data))
    return how


def corrupt_fault(inp: Path, work: Path, art: str, name: str, seed: int) -> Fault:
    """Damage one file of a copy of a reference artifact: loading it must refuse, or `rag verify` must name it;
    a load that succeeds with output identical to the intact artifact's means the byte did not matter."""
    ref = inp / "ref"
    shutil.copytree(ref / art, work / art)
    if art == "run":
        (work / art / "manifest.json").write_text((ref / art / "manifest.json").read_text())
    how = corrupt(work / art / name, seed)
    target = f"{art}/{name}"
    cmd = loaders(inp, work)[art]
    p = run(cmd)
    if p.returncode != 0:
        if one_line_error(p):
            return Fault("corrupt", target, seed, REFUSED, f"{how}; load refused: {p.stderr.strip().splitlines()[-1][:160]}")
        return Fault("corrupt", target, seed, SILENT, f"{how}; load crashed (exit {p.returncode}): {p.stderr[-300:]}")
    v = run(rag_cmd("verify", work / art))
    if v.returncode == 2 and "MISMATCH" in v.stdout:
        return Fault("corrupt", target, seed, REFUSED, f"{how}; loaded, rag verify names it")
    # loaded and verified (a manifest's own bytes are not hashed): harmless only if the result is that of the intact
    # artifact: the same search output, the reference run's records, the reference run's summary
    if art == "counts":
        same = content(work / "run-on-counts").get("records.jsonl") == content(ref / "run").get("records.jsonl")
    elif art == "run":
        same = (work / "run" / "summary.csv").read_text() == (ref / "run" / "summary.csv").read_text()
    else:
        same = run([c.replace(str(work), str(ref)) for c in cmd]).stdout == p.stdout
    if same:
        return Fault("corrupt", target, seed, REFUSED, f"{how}; no effect on results (an unused byte), verify OK")
    return Fault("corrupt", target, seed, SILENT, f"{how}; loaded and verified with another result")


def concurrent_fault(inp: Path, work: Path, kind: str, seed: int) -> Fault:
    """Two processes run the same command on one output at once: one builds, the other is refused naming it."""
    cmd, out = commands(inp, work)[kind]
    rng = random.Random(seed)
    a = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0, 0.1))
    b = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ra, rb = [(x.wait(timeout=300), *x.communicate()) for x in (a, b)]
    codes = sorted([ra[0], rb[0]])
    errs = ra[2] + rb[2]
    ok, why = same_as_reference(out, inp / "ref" / out.name) if out.exists() else (False, "no output")
    if not ok and kind == "eval" and codes == [0, 0]:
        return Fault("concurrent", kind, seed, SILENT, f"both ran; {why}")
    if codes == [0, 2] and ok and ("being written by another process" in errs or "already exists" in errs):
        return Fault("concurrent", kind, seed, REFUSED, "second writer refused" if "another process" in errs
                     else "second started after the first finished: 'already exists'")
    if codes == [0, 0] and ok:
        return Fault("concurrent", kind, seed, RESUMED, "the second resumed the finished run (nothing to do)")
    return Fault("concurrent", kind, seed, SILENT if codes[0] == 0 else LOST, f"exit codes {codes}; {why}; {errs[-300:]}")


@dataclass
class Tally:
    faults: list[Fault] = field(default_factory=list)

    def add(self, f: Fault) -> Fault:
        self.faults.append(f)
        return f

    def table(self) -> list[dict]:
        kinds = sorted({f.kind for f in self.faults})
        rows = []
        for k in kinds:
            fs = [f for f in self.faults if f.kind == k]
            rows.append({"fault": k, "injected": len(fs), **{o: sum(f.outcome == o for f in fs) for o in OUTCOMES}})
        rows.append({"fault": "total", "injected": len(self.faults),
                     **{o: sum(f.outcome == o for f in self.faults) for o in OUTCOMES}})
        return rows
