"""README.md runs: every command of its ```bash blocks and of the table in "Building what a preset expects", its
```python blocks and its ```yaml block are executed here on a small real workspace, so an example that stops working
fails CI.

The workspace mirrors the repository: WS/repo is the folder the commands run in (configs/ copied from the
repository; indexes/ and runs/ are made by the README's own commands, in README order), and WS/shared/data is its
../shared/data, holding slices of the real files under their real names:

    wiki/enwiki-2021-ids56.5M-57.0M.jsonl.xz   the first 2,000 of 36,183 articles (~6.4k passages)
    wiki/enwiki-2015-ids12-60633.jsonl.xz      the first 200 of 30,539 articles (~7.3k passages)
    qa/nq-open.test.jsonl                      the first 300 of 3,610 questions (ids unchanged: nq-open.test-N)
    qa/entityquestions/P*.test.json            the first 15 questions of each of the 18 relations
    entities/dbpedia-surface-forms.tsv.xz      every 10th of the 1.44M lines (a lexicon in seconds instead of a minute)
    the rest (NanoKnow counts, the relation templates, the XML dump sample): the real files, linked

The files the README names without saying where they come from are stand-ins: WS/repo/enwiki-pages-articles.xml.bz2
is the real MediaWiki dump sample, WS/repo/docs.parquet 300 articles of the 2021 slice (columns id, name, body),
WS/repo/psgs_w100.tsv 600 passages of it in DPR's layout (id, text, title), and WS/cluster is the README's shared
folder /shared of a multi-node run (wikiextractor-out/ in wikiextractor's AA/wiki_00 layout, the surface forms).
`.venv/bin/python` and `.venv/bin/rag` in WS/repo are wrappers that run this checkout; `rag ...` lines run in this
process through click's CliRunner, lines with shell syntax in bash.

Every README command must match exactly one rule of RULES, and every rule some command
(test_every_readme_command_has_exactly_one_rule), so a new README command without a rule fails. A rule runs its
line as written, or with substitutions (heavy knobs made small, stand-ins for what one CI machine lacks; each says
why), or, for what cannot run here (installs, other hosts, GPU servers, binaries that are not installed), exercises
it as far as possible and says why. `[--flag]` in a README line marks an optional flag: the line runs with it.
"""
from __future__ import annotations

import json
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from rag.cli import main
from tests.unit.openai_fake import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TABLE_SECTION = "Building what a preset expects"
EVAL_SECTION = "Evaluation: closed-book vs retrieval-augmented, by relevant-document count"


# --- the README's commands ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    text: str      # a bash command (continuations joined, comment dropped), or a whole python / yaml block
    lineno: int    # README line it starts on
    section: str   # the heading it is under
    kind: str      # bash | table | python | yaml


def _strip_comment(line: str) -> str:
    """`line` without a trailing `# comment` (a # after whitespace, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands(text: str) -> list[Command]:
    out: list[Command] = []
    section, block, start, buf = "", None, 0, []
    for n, raw in enumerate(text.splitlines(), 1):
        if block is None:
            if raw.startswith("#"):
                section = raw.lstrip("#").strip()
            elif raw.strip() in ("```bash", "```python", "```yaml"):
                block, start, buf = raw.strip()[3:], n + 1, []
            elif section == TABLE_SECTION and raw.startswith("|"):
                cells = [c.strip() for c in raw.strip("|").split("|")]
                for code in re.findall(r"`(rag [^`]+)`", cells[1] if len(cells) > 1 else ""):
                    out.append(Command(code, n, section, "table"))
            continue
        if raw.strip() == "```":
            if block != "bash":
                out.append(Command("\n".join(buf) + "\n", start, section, block))
            block = None
        elif block != "bash":
            buf.append(raw)
        else:
            if not buf:
                start = n
            part = raw.strip()
            if part.endswith("\\"):
                buf.append(part[:-1].strip())
                continue
            line = _strip_comment(" ".join([*buf, part]))
            buf = []
            if line:
                out.append(Command(line, start, section, "bash"))
    return out


COMMANDS = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def execution_order(commands: list[Command]) -> list[Command]:
    """README order, except that the table of what a preset expects runs before the evaluation commands need it."""
    table = [c for c in commands if c.section == TABLE_SECTION]
    rest = [c for c in commands if c.section != TABLE_SECTION]
    i = next(i for i, c in enumerate(rest) if c.section == EVAL_SECTION)
    return rest[:i] + table + rest[i:]


def sections(commands: list[Command]) -> list[str]:
    return list(dict.fromkeys(c.section for c in commands))


# --- the workspace ---------------------------------------------------------------------------------------------------

@dataclass
class Workspace:
    root: Path
    env: dict
    vars: dict                                     # values substitutions may name: {port}, {server}, {ws}, ...
    ran: list[str] = field(default_factory=list)   # command lines run so far, as the README writes them
    procs: list = field(default_factory=list)      # background servers started here

    @property
    def repo(self) -> Path:
        return self.root / "repo"


def _xz_slice(src: Path, dst: Path, keep: Callable[[int], bool], stop: int | None = None) -> list[str]:
    kept = []
    with lzma.open(src, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if stop is not None and i >= stop:
                break
            if keep(i):
                kept.append(line)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(dst, "wt", encoding="utf-8", preset=0) as f:
        f.writelines(kept)
    return kept


def _wrapper(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexec {body} \"$@\"\n")
    path.chmod(0o755)


def make_workspace(root: Path, shared: Path) -> Workspace:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, repo, cluster = root / "shared" / "data", root / "repo", root / "cluster"
    wiki21 = _xz_slice(shared / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz",
                       data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz", lambda i: True, stop=2000)
    _xz_slice(shared / "wiki" / "enwiki-2015-ids12-60633.jsonl.xz", data / "wiki" / "enwiki-2015-ids12-60633.jsonl.xz",
              lambda i: True, stop=200)
    _xz_slice(shared / "entities" / "dbpedia-surface-forms.tsv.xz", data / "entities" / "dbpedia-surface-forms.tsv.xz",
              lambda i: i % 10 == 0)
    (data / "qa").mkdir(parents=True)
    with open(shared / "qa" / "nq-open.test.jsonl", encoding="utf-8") as f:
        (data / "qa" / "nq-open.test.jsonl").write_text("".join(next(f) for _ in range(300)), encoding="utf-8")
    eq = data / "qa" / "entityquestions"
    eq.mkdir()
    for p in sorted((shared / "qa" / "entityquestions").glob("P*.test.json")):
        (eq / p.name).write_text(json.dumps(json.loads(p.read_text(encoding="utf-8"))[:15]), encoding="utf-8")
    (eq / "relation_query_templates.json").symlink_to(shared / "qa" / "entityquestions" / "relation_query_templates.json")
    (data / "counts").mkdir()
    (data / "counts" / "nanoknow-nq").symlink_to(shared / "counts" / "nanoknow-nq")

    repo.mkdir()
    shutil.copytree(ROOT / "configs", repo / "configs")
    (repo / "scripts").symlink_to(ROOT / "scripts")
    (repo / "eval").mkdir()
    (repo / "eval" / "bench_eval.py").symlink_to(ROOT / "eval" / "bench_eval.py")
    (repo / "enwiki-pages-articles.xml.bz2").symlink_to(shared / "wiki" / "enwiki-sample-pages-articles.xml.bz2")
    docs = [json.loads(line) for line in wiki21[:300]]
    pq.write_table(pa.table({"id": [d["id"] for d in docs], "name": [d["title"] for d in docs],
                             "body": [d["text"] for d in docs]}), repo / "docs.parquet")
    rows = ["id\ttext\ttitle"] + [f"{i + 1}\t{' '.join(d['text'].split()[:100])}\t{d['title']}"
                                  for i, d in enumerate(json.loads(line) for line in wiki21[:600])]
    (repo / "psgs_w100.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for sub, lines in (("AA", wiki21[:400]), ("AB", wiki21[400:800])):
        (cluster / "wikiextractor-out" / sub).mkdir(parents=True)
        (cluster / "wikiextractor-out" / sub / "wiki_00").write_text("".join(lines), encoding="utf-8")
    (cluster / "dbpedia-surface-forms.tsv.xz").symlink_to(data / "entities" / "dbpedia-surface-forms.tsv.xz")

    _wrapper(repo / ".venv" / "bin" / "python", shlex.quote(sys.executable))
    _wrapper(repo / ".venv" / "bin" / "rag", f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'cli.py'))}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    port = free_port()
    return Workspace(root, env, {"ws": str(root), "root": str(ROOT), "port": port, "server": f"http://127.0.0.1:{port}/v1",
                                 "refused": free_port()})


# --- how a line runs -------------------------------------------------------------------------------------------------

def cli(ws: Workspace, line: str, code: int = 0) -> str:
    """A `rag ...` or `.venv/bin/rag ...` line, in this process (cwd = WS/repo)."""
    argv = shlex.split(line)
    assert argv[0] in ("rag", ".venv/bin/rag"), line
    old = os.getcwd()
    os.chdir(ws.repo)
    try:
        env = {k: ws.env.get(k) for k in ("MY_SERVER_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")}  # None: unset
        r = CliRunner().invoke(main, argv[1:], env=env)
    finally:
        os.chdir(old)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    assert r.exit_code == code, f"exit {r.exit_code}, expected {code}:\n{r.output[-4000:]}"
    return r.output


def sh(ws: Workspace, line: str, cwd: Path | None = None) -> str:
    """A line with shell syntax (or a non-rag program), in bash (cwd = WS/repo)."""
    r = subprocess.run(["bash", "-c", line], cwd=cwd or ws.repo, env=ws.env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exit {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r.stdout + r.stderr


def install_and(inner: Callable) -> Callable:
    """`bash scripts/install.sh && X`: the installer is syntax-checked, then X runs."""

    def run(ws: Workspace, line: str) -> str:
        head = "bash scripts/install.sh && "
        assert line.startswith(head), line
        sh(ws, "bash -n scripts/install.sh", cwd=ROOT)
        return inner(ws, line[len(head):])

    return run


def server(ws: Workspace, line: str) -> str:
    """A server line: started in the background (its own process group, stopped when the module ends); waits until
    its /v1/models answers."""
    import httpx

    log = ws.root / "server.log"
    proc = subprocess.Popen(["bash", "-c", "exec " + line], cwd=ws.repo, env=ws.env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    ws.procs.append(proc)
    t = time.time()
    while time.time() - t < 180:
        assert proc.poll() is None, f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            r = httpx.get(f"{ws.vars['server']}/models", timeout=2)
            if r.status_code == 200:
                return r.text
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"the server did not answer within 180 s:\n{log.read_text()[-3000:]}")


def export(ws: Workspace, line: str) -> str:
    """`export NAME=VALUE`: set for the lines after it."""
    name, value = shlex.split(line)[1].split("=", 1)
    ws.env[name] = value
    return ""


def already_run(ws: Workspace, line: str) -> str:
    """A line the README repeats (the table restates a block's command): it must be one that ran before."""
    norm = " ".join(shlex.split(line))
    assert norm in {" ".join(shlex.split(x)) for x in ws.ran}, f"not a command that ran earlier: {line}"
    return ""


def fails_with(message: str) -> Callable:
    """A line that cannot succeed here: it must fail with exit 2 and a one-line message matching `message`."""

    def run(ws: Workspace, line: str) -> str:
        out = cli(ws, line, code=2)
        assert re.search(message, out), out
        return out

    return run


def ray_line(ws: Workspace, line: str) -> str:
    """A line for a Ray cluster at HEAD_IP: run against an address where no head answers (it must fail at once with
    the one-line error naming `ray start`), then as the local equivalent (same inputs, --exec-engine local)."""
    assert "--exec-engine ray --ray-address HEAD_IP:6379" in line, line
    out = cli(ws, line.replace("HEAD_IP:6379", f"127.0.0.1:{ws.vars['refused']}"), code=2)
    assert "cannot reach the Ray cluster" in out and "ray start --head" in out, out
    return cli(ws, line.replace("--exec-engine ray --ray-address HEAD_IP:6379", "--exec-engine local"))


def ray_cli(ws: Workspace, line: str) -> str:
    """`ray start|stop ...`: parsed by Ray's own click command (options and values checked), not run."""
    import ray.scripts.scripts as ray_scripts  # rag[ray], part of `all`
    argv = shlex.split(line.replace("HEAD_IP", "127.0.0.1"))
    assert argv[0] == "ray", line
    cmd = ray_scripts.cli.commands[argv[1]]
    ctx = cmd.make_context(f"ray {argv[1]}", argv[2:])  # a wrong option or value raises click.UsageError
    return json.dumps(ctx.params, default=str)


def pip_extra(ws: Workspace, line: str) -> str:
    """`pip install 'rag[EXTRA]'`: the extra exists in pyproject.toml (and this environment has it installed)."""
    import tomllib

    extra = re.search(r"rag\[(\w+)\]", line).group(1)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra in extras, f"pyproject.toml has no extra {extra!r}"
    return extra


def not_here(probe: str) -> Callable:
    """A program this machine does not have: when `probe` is on PATH its --help must work, else nothing runs (the
    rule's `why` says what covers the line instead)."""

    def run(ws: Workspace, line: str) -> str:
        if shutil.which(probe):
            return sh(ws, f"{probe} --help")
        return f"{probe}: not installed"

    return run


def python(ws: Workspace, code: str) -> str:
    """A ```python block, as written, in a fresh interpreter (cwd = WS/repo)."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ws.repo, env=ws.env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


def run_by(test_file: str, needle: str) -> Callable:
    """A ```python block that another test runs as written (on the data it needs): that test must still select it."""

    def run(ws: Workspace, code: str) -> str:
        assert needle in (ROOT / test_file).read_text(encoding="utf-8"), f"{test_file} no longer runs this block"
        return ""

    return run


def reader_yaml(ws: Workspace, text: str) -> str:
    """The ```yaml reader block: it is the reader section of a valid evaluation config."""
    import yaml

    from rag.evaluation.config import config_from_dict

    data = yaml.safe_load((ROOT / "configs" / "smoke-nq-open-wiki2021.yaml").read_text())
    data.update(yaml.safe_load(text))
    cfg = config_from_dict(data, "README.md")
    assert cfg.reader.backend == "openai" and cfg.reader.options["base_url"] == "http://127.0.0.1:8080/v1"
    return str(cfg.reader)


# --- the rules -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sub:
    pattern: str   # regex in the README line
    repl: str      # replacement; {name} is a workspace value (port, server, ws, root, refused)
    why: str


@dataclass(frozen=True)
class Rule:
    match: str                       # regex searched in the README command (in a python / yaml block: its code)
    run: Callable = cli              # how the line runs
    subs: tuple[Sub, ...] = ()       # applied in order before running; each must match
    why: str = ""                    # for a line not run as written: what is exercised instead, and why
    expect: str = ""                 # regex the output must contain
    kind: str = "bash"               # the kind of README command it applies to: bash, table, python, yaml


HASH = Sub(r"--kind dense", "--kind dense --encoder hash:64",
           "MiniLM encodes ~50 passages/s on 2 cores (minutes even for the slice); the model-free hash encoder runs the "
           "same build, FAISS and search code, and tests/integration/test_dense_minilm.py runs MiniLM itself")
SMOLLM = Sub(r"qwen2\.5-coder-0\.5b", "smollm2-135m",
             "Qwen2.5-Coder-0.5B is ~4x SmolLM2-135M's compute and comes from the optional `ladder` extra; the llama.cpp "
             "path is the same")
THREADS = Sub(r"$", " --threads 1",
              "one reader thread: llama.cpp's threads busy-wait, and on a CI machine shared with other jobs two can be "
              "10x slower than one (README, Benchmarks); the auto backend's torch reader takes the same setting")
FAKE = ("generation is nearly all of a run's time (minutes for a few questions with three modes); the fake reader "
        "runs every other stage, and real readers run in test_eval_real.py and test_smoke_pin.py")
EVAL = Sub(r"$", " --per-bucket 3 --backend fake --reader fake", "3 questions per bucket instead of 40, fake reader: " + FAKE)
CLUSTER = Sub(r"/shared/", "{ws}/cluster/", "/shared is the cluster's shared folder; here a folder of the workspace")
SERVER = Sub(r"http://127\.0\.0\.1:8080/v1", "{server}", "the llama_cpp.server above listens on a free port, not 8080")
SERVER_MODEL = ("no vLLM / Ollama / hosted server here (no GPU, not installed, no network): the same request path runs "
                "against the llama_cpp.server started above, under its model id")
RAY = ("a multi-node cluster is not available in CI: the line runs against an address where no Ray head answers (it "
       "must fail at once, naming `ray start`), then with --exec-engine local, which gives the same result "
       "(tests/integration/test_ray_engine.py compares the two on a local Ray instance)")
TINY_BENCH = ("--people 16 --orgs 5 --cities 5 --countries 3 --max-count 60 --distractors 20 --reading-docs 30 --steps 8 "
              "--d-model 32 --layers 1 --threads 1 --encoder hash:64")
def tiny_dynamics(inner: Callable) -> Callable:
    """Runs `inner` with the dynamics preset `readme-tiny` registered: the paper preset's condition names on a
    world and model small enough for seconds (tests/unit/test_world_dynamics.py checks the measures themselves)."""

    def run(ws: Workspace, line: str) -> str:
        from rag.world import dynamics
        from rag.world.dynamics import Condition, DynamicsConfig
        from rag.world.generator import WorldParams
        from rag.world.tinylm import TinyConfig

        dynamics.PRESETS["readme-tiny"] = DynamicsConfig(
            world=WorldParams(n_people=16, n_orgs=5, n_cities=5, n_countries=3, max_count=40, n_distractor_docs=10,
                              n_reading_docs=0, n_nonce=0, n_demo_people=0),
            model=TinyConfig(n_layer=1, n_head=2, d_model=16, block_size=64),
            conditions=(Condition("base", batch_size=8, interval=4, d_model=16),
                        Condition("batch128", batch_size=16, interval=4, d_model=16)),
            n_people=1, n_orgs=1, injections=3, base_steps=10, base_batch=8, tail=8, window=4, warmup=5,
            checkpoint_every=5)
        try:
            return inner(ws, line)
        finally:
            dynamics.PRESETS.pop("readme-tiny")

    return run


TINY_DYNAMICS = Sub(r"--preset paper", "--preset readme-tiny",
                    "the paper preset trains six conditions for ~8 min on 2 idle cores; `readme-tiny` has two of its "
                    "condition names on a 16-person world and a 1-layer d=16 model (seconds)")
TINY_INJECT = Sub(r"$", " --people 2 --orgs 1 --heldout 2 --docs 2 --epochs 2 --lora-rank 2 --threads 1",
                  "3 new entities and 2 epochs instead of 24 and 10, on the tiny bench model the first command trained")

INSTALL = ("scripts/install.sh makes a venv and pip-installs GBs (torch, llama.cpp built from source) from the network: "
           "it is syntax-checked with `bash -n`, and the line goes on in this already-installed environment")

RULES: list[Rule] = [
    # the two quick starts
    Rule(r"^bash scripts/install\.sh && \.venv/bin/rag bench$", install_and(cli),
         (Sub(r"bench$", "bench " + TINY_BENCH, "the tiny world of test_world_bench.py: the full bench trains for ~8 min"),),
         why=INSTALL, expect=r"exact"),
    Rule(r"^bash scripts/install\.sh && \.venv/bin/python -m pytest -q$", install_and(sh),
         (Sub(r"-m pytest -q$", "-m pytest -q --collect-only -p no:cacheprovider {root}",
              "this test is part of that suite: running it here would recurse, so the suite is collected (every test "
              "module imports and every test is found)"),),
         why=INSTALL, expect=r"\d+ tests collected"),
    # The world over time (after the quick start's bench made runs/bench)
    Rule(r"^\.venv/bin/rag world dynamics --preset paper --out runs/dynamics --threads 1$", tiny_dynamics(cli),
         (TINY_DYNAMICS,), why=TINY_DYNAMICS.why, expect=r"batch128"),
    Rule(r"^\.venv/bin/rag world dynamics --preset paper --out runs/dynamics --condition batch128$", tiny_dynamics(cli),
         (TINY_DYNAMICS,), why=TINY_DYNAMICS.why + " (the condition finished above is reused)", expect=r"batch128"),
    Rule(r"^\.venv/bin/rag world inject --world runs/bench/world --model runs/bench/model --out runs/inject$",
         subs=(TINY_INJECT,), why=TINY_INJECT.why, expect=r"train-full"),
    Rule(r"^\.venv/bin/rag bench --dynamics --inject$", tiny_dynamics(cli),
         (Sub(r"--dynamics --inject$", "--dynamics-preset readme-tiny --inject " + TINY_BENCH,
              "the tiny world of the first command, the readme-tiny preset (seconds) instead of quick (a minute), and "
              "inject's defaults on that tiny model"),),
         why="see the substitution", expect=r"."),
    # On real data
    Rule(r"^\.venv/bin/rag corpus build \.\./shared/data/wiki/enwiki-2021\S+ --out indexes/wiki2021$", expect=r"passages"),
    Rule(r"^\.venv/bin/rag index build --passages indexes/wiki2021 --kind bm25 --out indexes/wiki2021-bm25$",
         expect=r"built bm25 index"),
    Rule(r"^\.venv/bin/rag search .* --index indexes/wiki2021-bm25 -k 5$", expect=r"\[\d+#\d+\]"),
    Rule(r"^\.venv/bin/rag ask .* --mode both --index indexes/wiki2021-bm25 -k 3$", subs=(THREADS,), why=THREADS.why,
         expect=r"closed-book:"),
    # Corpus -> passages
    Rule(r"^rag corpus build \.\./shared/data/wiki/enwiki-2015\S+ \.\./shared/data/wiki/enwiki-2021\S+ --out indexes/wiki-both$",
         expect=r"passages"),
    Rule(r"^rag corpus build enwiki-pages-articles\.xml\.bz2 --out indexes/dump$", expect=r"redirects"),
    Rule(r"^rag corpus build docs\.parquet ", expect=r"300 documents"),
    Rule(r"^rag corpus info indexes/wiki-both$", expect=r"fingerprint"),
    # Indexes and search
    Rule(r"^rag index build --passages indexes/wiki-both --kind bm25 --out indexes/wiki-both-bm25$", expect=r"built bm25"),
    Rule(r"^rag index build .* --engine rank-bm25 ", expect=r"built bm25"),
    Rule(r"^rag index build --passages indexes/wiki2021 --kind dense --out indexes/wiki2021-dense$", subs=(HASH,),
         why=HASH.why, expect=r"built dense"),
    Rule(r"^rag index build .* --factory HNSW32 --embeddings-from ", subs=(HASH,), why=HASH.why, expect=r"built dense"),
    Rule(r"^rag index build .* --kind hybrid ", expect=r"built hybrid"),
    Rule(r"^rag index info indexes/wiki2021-hnsw$", expect=r"fingerprint matches"),
    Rule(r"^rag verify indexes/wiki2021-hnsw$", expect=r"OK indexes/wiki2021-hnsw: every recorded file matches"),
    Rule(r"^rag search .* --index indexes/wiki2021-hnsw -k 10 --ef-search 128 --json$", expect=r'"pid"'),
    Rule(r'r = load_index\("indexes/wiki2021-bm25"\)', python, kind="python"),
    # Readers
    Rule(r"^rag models list$", expect=r"smollm2-135m"),
    Rule(r"^rag models auto qwen2\.5-coder-0\.5b$", subs=(SMOLLM,), why=SMOLLM.why, expect=r"(?m)^(torch|llama-cpp|ct2) \w+: "),
    Rule(r'^rag ask "who wrote the origin of species"$', subs=(THREADS,), why=THREADS.why, expect=r"closed-book:"),
    Rule(r"^rag ask .* --mode both --index indexes/wiki2021-bm25 -k 5 --model qwen2\.5-coder-0\.5b --json$", subs=(SMOLLM, THREADS),
         why=SMOLLM.why, expect=r'"rag"'),
    Rule(r'^rag ask .* --gold "Charles Darwin" --gold Darwin --json$', subs=(THREADS,), why=THREADS.why,
         expect=r'"logprob_per_token"'),
    Rule(r"^rag ask .* --model qwen2\.5-coder-0\.5b --quant q4_0$", subs=(SMOLLM, THREADS), why=SMOLLM.why,
         expect=r"closed-book:"),
    Rule(r"from rag\.pipeline import Pipeline", run_by("tests/integration/test_smoke_pin.py", 'readme_python_blocks("from rag.pipeline import")'),
         why="runs as written in test_smoke_pin.py, on the 2021 extract it builds there", kind="python"),
    # Using your own model server
    Rule(r"^\.venv/bin/python -m llama_cpp\.server ", server,
         (Sub(r"--port 8080", "--port {port}", "a free port: 8080 may be taken on a CI machine"),),
         why="started in the background for the `rag ask --backend openai` lines below, stopped at the end",
         expect=r"smollm2-135m"),
    Rule(r"^llama-server ", not_here("llama-server"),
         why="llama.cpp's own server binary is not installed here (and model.gguf stands for any file): the OpenAI "
             "backend runs against llama-cpp-python's server above, and --help runs where llama-server is installed"),
    Rule(r"^rag ask .* --backend openai --base-url http://127\.0\.0\.1:8080/v1 --model smollm2-135m$", subs=(SERVER,),
         why=SERVER.why, expect=r"closed-book:"),
    Rule(r"^vllm serve ", not_here("vllm"),
         why="vLLM needs a CUDA GPU and is not part of `all`: its OpenAI server is exercised through the next line "
             "against llama_cpp.server; tests/integration/test_reader_vllm.py runs vLLM on a GPU machine"),
    Rule(r"^rag ask .* --base-url http://127\.0\.0\.1:8000/v1 --model HuggingFaceTB/SmolLM2-135M-Instruct$",
         subs=(Sub(r"http://127\.0\.0\.1:8000/v1", "{server}", SERVER_MODEL),
               Sub(r"HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m", SERVER_MODEL)),
         why=SERVER_MODEL, expect=r"closed-book:"),
    Rule(r"^rag ask .* --backend vllm --model smollm2-135m$", fails_with(r"(?i)vllm|cuda|gpu"),
         why="vLLM needs a CUDA GPU (and rag[vllm], not in `all`): the line must fail with one line saying what to "
             "install or use; test_reader_vllm.py runs it on a GPU"),
    Rule(r"^ollama serve & ollama pull ", not_here("ollama"),
         why="Ollama is not installed here and `ollama pull` downloads from the internet: the `rag ask` line after it "
             "runs against llama_cpp.server"),
    Rule(r"^rag ask .* --base-url http://127\.0\.0\.1:11434/v1 --model smollm2:135m$",
         subs=(Sub(r"http://127\.0\.0\.1:11434/v1", "{server}", SERVER_MODEL), Sub(r"smollm2:135m", "smollm2-135m", SERVER_MODEL)),
         why=SERVER_MODEL, expect=r"closed-book:"),
    Rule(r"^export MY_SERVER_KEY=", export),
    Rule(r"^rag ask .* --base-url https://models\.example\.org/v1 --model NAME --api-key-env MY_SERVER_KEY$",
         subs=(Sub(r"https://models\.example\.org/v1", "{server}", SERVER_MODEL), Sub(r"--model NAME", "--model smollm2-135m", SERVER_MODEL)),
         why=SERVER_MODEL + "; the key is sent from MY_SERVER_KEY (this server accepts any)", expect=r"closed-book:"),
    Rule(r"^reader:\n  model: smollm2-135m", reader_yaml, kind="yaml",
         why="a fragment of an evaluation config: it must parse as the reader section of one"),
    # Relevant-document counts
    Rule(r"^rag counts build --passages indexes/wiki-both --qa \.\./shared/data/qa/nq-open\.test\.jsonl ", expect=r"unlinked"),
    Rule(r"^rag counts show indexes/counts-nq-open-wiki-both$", expect=r"bucket"),
    Rule(r"^rag counts compare .* --external \.\./shared/data/counts/nanoknow-nq$", expect=r"Spearman"),
    Rule(r"^rag counts build --passages indexes/wiki-both --qa \.\./shared/data/qa/entityquestions ", expect=r"unlinked"),
    Rule(r"^rag counts evaluate indexes/counts-entityquestions-wiki-both ", expect=r"all"),
    Rule(r"^rag link --lexicon indexes/counts-nq-open-wiki-both/lexicon ", expect=r"Dante"),
    # Building what a preset expects (run before the evaluation commands)
    Rule(r"^rag corpus build .* --out indexes/wiki-both$", already_run, why="the same command as in Corpus -> passages",
         kind="table"),
    Rule(r"^rag index build --passages indexes/wiki-both --kind bm25 --out indexes/wiki-both-bm25$", already_run,
         why="the same command as in Indexes and search", kind="table"),
    Rule(r"^rag index build --passages indexes/wiki-both --kind dense --precision bf16 --compile --out indexes/wiki-both-dense$",
         subs=(HASH,), why=HASH.why, expect=r"built dense", kind="table"),
    Rule(r"^rag counts build .* --out indexes/counts-nq-open-wiki-both$", already_run,
         why="the same command as in Relevant-document counts", kind="table"),
    # Evaluation
    Rule(r"^rag eval run --config configs/nq-open\.yaml$", subs=(EVAL,), why=EVAL.why, expect=r"rag:bm25"),
    Rule(r"^rag eval run --config configs/nq-open\.yaml --per-bucket 20 --reader qwen2\.5-coder-1\.5b --out runs/nq-1\.5b$",
         subs=(Sub(r"--per-bucket 20", "--per-bucket 3", "3 questions per bucket instead of 20"),
               Sub(r"--reader qwen2\.5-coder-1\.5b", "--reader fake --backend fake", FAKE)),
         why=FAKE, expect=r"rag:bm25"),
    Rule(r"^rag eval run --config configs/nq-open\.yaml --retriever bm25 --set reader\.n_threads=1$", subs=(EVAL,),
         why=EVAL.why + " (the same settings as the first run, so it resumes it)", expect=r"rag:bm25"),
    Rule(r"^rag eval report runs/nq-open --edges 0,10,1000$", expect=r"10-999"),
    Rule(r"^rag eval report runs/nq-open --html$", expect=r"report\.html"),
    Rule(r"^rag eval compare runs/nq-open runs/nq-1\.5b$", expect=r"closed"),
    Rule(r"^\.venv/bin/python eval/bench_eval\.py --config configs/nq-open\.yaml$", sh,
         (Sub(r"$", " --per-bucket 3 --results {ws}/eval-results -- --backend fake",
              "3 per bucket with the fake reader (" + FAKE + "); the results go to the workspace, not the repository's "
              "eval/results"),), why=FAKE, expect=r"Evaluation run timing"),
    Rule(r"run = load_run\(", run_by("tests/integration/test_smoke_pin.py", 'readme_python_blocks("load_run(")'),
         why="runs as written in test_smoke_pin.py, on a smoke-preset run it makes there", kind="python"),
    Rule(r'run = open_run\("runs/nq-open"\)', python, expect=r"reader-missed|outcome|mean", kind="python"),
    # A multi-node run
    Rule(r"^pip install 'rag\[all\]'$", pip_extra,
         why="installs from the network: checked that the extra exists; this environment is installed with it"),
    Rule(r"^ray start ", ray_cli,
         why="starts Ray daemons that outlive the test and would collide with other Ray sessions on the machine: "
             "parsed by Ray's own CLI instead (the options and values exist)"),
    Rule(r"^ray stop$", ray_cli, why="nothing was started (see ray start): parsed by Ray's own CLI"),
    Rule(r"^rag corpus build /shared/wikiextractor-out/ ", ray_line, (CLUSTER,), why=RAY, expect=r"800 documents"),
    Rule(r"^rag index build --passages /shared/indexes/wiki --kind dense ", ray_line,
         (CLUSTER, HASH, Sub(r"--shards 420", "--shards 3", "3 shards of the 800-article slice instead of 420 of 21M passages")),
         why=RAY + "; " + HASH.why, expect=r"built dense"),
    Rule(r"^rag counts lexicon --passages /shared/indexes/wiki ", subs=(CLUSTER,), why=CLUSTER.why, expect=r"forms"),
    Rule(r"^rag counts postings --passages /shared/indexes/wiki ", ray_line, (CLUSTER,), why=RAY, expect=r"pairs"),
    Rule(r"^rag eval run --config configs/nq-open\.yaml --exec-engine ray ", ray_line,
         (EVAL, Sub(r"$", " --out runs/nq-open-ray", "a run folder of its own, so that there is work to send to the "
                                                     "cluster (the finished runs/nq-open has none and never connects)")),
         why=RAY + "; " + EVAL.why, expect=r"rag:bm25"),
    Rule(r"^mkdir parts && tail -n \+2 psgs_w100\.tsv \| split ", sh,
         (Sub(r"split -l 330000", "split -l 200", "600 rows in parts of 200 (the real file: 21M rows in parts of 330k)"),),
         why="psgs_w100.tsv is DPR's 13 GB download: the workspace holds 600 real passages in its layout"),
    Rule(r"^rag corpus build parts/ --format tsv ", ray_line, (CLUSTER,), why=RAY, expect=r"600 documents"),
]


def rule_for(cmd: Command) -> list[Rule]:
    return [r for r in RULES if r.kind == cmd.kind and re.search(r.match, cmd.text, flags=re.M)]


def normalise(cmd: Command) -> str:
    """`[--flag]` (an optional flag in the README) is run with the flag."""
    return re.sub(r"\[(--[^\]]+)\]", r"\1", cmd.text) if cmd.kind in ("bash", "table") else cmd.text


def prepare(rule: Rule, text: str, ws: Workspace) -> str:
    for s in rule.subs:
        text, n = re.subn(s.pattern, lambda m, s=s: s.repl.format_map(ws.vars), text)
        assert n, f"substitution {s.pattern!r} no longer matches: {text}"
    assert not re.search(r"(^|\s)/shared/", text), f"a path outside the workspace: {text}"
    return text


# --- the tests ---------------------------------------------------------------------------------------------------------

def test_every_readme_command_has_exactly_one_rule():
    """A new README command without a rule fails here; so does a rule that no longer matches anything."""
    assert len(COMMANDS) > 50 and {c.kind for c in COMMANDS} == {"bash", "table", "python", "yaml"}
    for c in COMMANDS:
        c = Command(normalise(c), c.lineno, c.section, c.kind)
        matched = rule_for(c)
        assert len(matched) == 1, f"README.md:{c.lineno} matches {len(matched)} rules: {c.text}"
    used = {id(r) for c in COMMANDS for r in rule_for(Command(normalise(c), c.lineno, c.section, c.kind))}
    stale = [r.match for r in RULES if id(r) not in used]
    assert not stale, f"rules that match no README command: {stale}"
    for r in RULES:
        as_written = r.run in (cli, sh, python, export) and not r.subs
        assert as_written or r.why, f"rule {r.match!r} changes or skips its line but says no why"
        assert all(s.why for s in r.subs), r.match


def test_readme_parser():
    cmds = readme_commands("# A\n```bash\n# comment\nrag a \\\n    --b c   # why\necho '# not a comment'\n```\n"
                           f"### {TABLE_SECTION}\n| x | `rag d --e` (same for f) | 1 s |\n| y | not code | - |\n```python\nprint(1)\n```\n")
    assert [(c.text, c.lineno, c.section, c.kind) for c in cmds] == [
        ("rag a --b c", 4, "A", "bash"), ("echo '# not a comment'", 6, "A", "bash"),
        ("rag d --e", 9, TABLE_SECTION, "table"), ("print(1)\n", 12, TABLE_SECTION, "python")]


@pytest.fixture(scope="module")
def ws(shared_data, tmp_path_factory):
    w = make_workspace(tmp_path_factory.mktemp("readme"), shared_data)
    yield w
    for proc in w.procs:  # the servers this module started, each in its own process group
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


ORDER = execution_order(COMMANDS)


@pytest.mark.parametrize("section", sections(ORDER))
def test_readme_section_runs(ws, section):
    """Each README section's commands, in README order (the sections too: later ones use what earlier ones built)."""
    for cmd in [c for c in ORDER if c.section == section]:
        (rule,) = rule_for(Command(normalise(cmd), cmd.lineno, cmd.section, cmd.kind))
        line = prepare(rule, normalise(cmd), ws)
        t = time.perf_counter()
        try:
            out = rule.run(ws, line)
        except BaseException as e:
            raise AssertionError(f"README.md:{cmd.lineno} failed: {cmd.text}\nran: {line}\n{e}") from e
        print(f"README.md:{cmd.lineno} {time.perf_counter() - t:5.1f} s  {line[:150]}")
        if rule.expect:
            assert re.search(rule.expect, out), f"README.md:{cmd.lineno}: output lacks {rule.expect!r}:\n{out[-3000:]}"
        ws.ran.append(cmd.text)
