"""report.html: one self-contained page per run folder (`rag eval report RUN --html`).

No network at view time: CSS and JavaScript are inline, plots are base64 PNGs, the data is JSON in two
<script type="application/json"> blocks (the per-question data, parsed at load; the passage texts, parsed
when a row is first expanded). The page holds
    the summary      summary.md rendered (header, accuracy, recall, by count method, adaptive retrieval, plots,
                     failure attribution), the same text as summary.md with its images embedded
    the explorer     one row per (question, mode), paginated; filters by bucket, mode, outcome (right / wrong,
                     or a failure-attribution outcome) and text (question, answers, id, prediction). A row
                     expands to the question, the gold answers, every mode's prediction and scores, and the
                     passages shown to the reader by each retriever, gold answers highlighted
Passage texts come from each retriever's passage store, found through the run manifest's index entries; when a
store is missing or changed since the run, the page says so where the passages would be.

Data shapes (JSON, compact arrays to keep 10,000 questions x 3 modes small):
    q[i]      [qid, question, [answers], count|null, bucket index]
    r[m][i]   [prediction, em, f1, contains, outcome index|-1, first_hit|null, shown, [passage index...]] or null
    passages  {"title": [...], "text": [...] (null: text unavailable), "store": [retriever index...]}
"""
from __future__ import annotations

import base64
import html
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.evaluation.attribution import LABELS, OUTCOMES, attribute
from rag.evaluation.records import CLOSED
from rag.evaluation.config import answer_metric

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.run_folder import Run

log = logging.getLogger(__name__)

FILE = "report.html"


# --- passage texts -----------------------------------------------------------------------------------


def _open_store(run: "Run", retriever: str):
    """(PassageStore, None) for a retriever's index, or (None, why not)."""
    from rag.artifacts import read_manifest
    from rag.corpus.store import PassageStore
    from rag.errors import RagError

    entry = run.manifest.get("indexes", {}).get(retriever) or {}
    index = Path(entry.get("path", ""))
    info = entry.get("passages") or {}
    if not info and index.exists():
        try:
            info = read_manifest(index).get("passages") or {}
        except (RagError, OSError, ValueError):
            info = {}
    if not info.get("path"):
        return None, f"the run manifest names no passage store for {retriever}"
    # as an index finds its store: relative to the index (moved together), absolute, then as given at build time
    path = Path(info["path"])
    candidates = [index / info["relpath"]] if info.get("relpath") else []
    candidates += [Path(info["abspath"])] if info.get("abspath") else []
    candidates += [path] if path.is_absolute() else [path, index / path]
    found = next((p for p in candidates if (p / "manifest.json").exists()), None)
    if found is None:
        return None, f"passage store {path} not found (texts of {retriever}'s passages unavailable)"
    try:
        store = PassageStore(found)
    except (RagError, OSError, ValueError) as e:
        return None, f"passage store {found} unreadable: {e}"
    if info.get("fingerprint") and store.fingerprint != info["fingerprint"]:
        return None, (f"passage store {found} changed since the run (fingerprint {store.fingerprint}, the run's index "
                      f"was built from {info['fingerprint']}); texts not shown")
    return store, None


def passage_texts(run: "Run", wanted: dict[str, list[str]]) -> tuple[dict[str, dict[str, tuple[str, str]]], dict[str, str | None]]:
    """retriever -> pid -> (title, text) for the pids wanted, and retriever -> why its texts are missing (None: found)."""
    from rag.errors import RagError

    texts: dict[str, dict[str, tuple[str, str]]] = {}
    status: dict[str, str | None] = {}
    opened: dict[str, object] = {}
    for r, pids in wanted.items():
        store, why = _open_store(run, r)
        status[r] = why
        if store is None:
            log.warning("report.html: %s", why)
            continue
        store = opened.setdefault(str(store.folder.resolve()), store)
        try:
            got = store.get(pids)
        except (RagError, OSError) as e:  # a pid the store lacks: say so in the report rather than fail it
            status[r] = f"passage store {store.folder}: {e}"
            log.warning("report.html: %s", status[r])
            continue
        texts[r] = {p.pid: (p.title, p.text) for p in got}
    return texts, status


# --- the data ----------------------------------------------------------------------------------------


def _round(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 3)


def report_data(run: "Run", outcomes: dict[str, dict[str, str]] | None = None, edges: Sequence[int] | None = None,
                passages: bool = True) -> tuple[dict, dict]:
    """(explorer data, passages data) for the page (shapes: the module docstring)."""
    from rag.evaluation.summary import Bucketing

    outcomes = attribute(run) if outcomes is None else outcomes
    bk = Bucketing.of(run, edges)
    labels = bk.labels
    bucket_ix = {b: i for i, b in enumerate(labels)}
    outcome_ix = {o: i for i, o in enumerate(OUTCOMES)}
    modes = run.modes
    by_mode = run.by_mode(modes)
    qids = bk.evaluated
    first = {}
    for m in modes:
        for q, rec in by_mode[m].items():
            first.setdefault(q, rec)
    q_rows = [[q, first[q].question, list(first[q].answers), first[q].count, bucket_ix[bk.label_of[q]]] for q in qids]

    wanted: dict[str, list[str]] = {}
    for r in run.retrievers:
        seen: dict[str, None] = {}
        for rec in by_mode[f"rag:{r}"].values():
            seen.update(dict.fromkeys(rec.pids or ()))
        wanted[r] = list(seen)
    texts, status = passage_texts(run, wanted) if passages else ({}, {r: "passage texts left out of this report" for r in wanted})
    p_title: list[str] = []
    p_text: list[str | None] = []
    p_store: list[int] = []
    p_ix: dict[tuple[str, str], int] = {}
    ret_ix = {r: i for i, r in enumerate(run.retrievers)}

    def pidx(r: str, pid: str) -> int:
        key = (r, pid)
        if key not in p_ix:
            title, text = texts.get(r, {}).get(pid, (pid, None))
            p_ix[key] = len(p_title)
            p_title.append(title or pid)
            p_text.append(text)
            p_store.append(ret_ix[r])
        return p_ix[key]

    r_rows = []
    for m in modes:
        recs = by_mode[m]
        ret = None if m == CLOSED else m.split(":", 1)[1]
        got = outcomes.get(ret, {}) if ret else {}
        col = []
        for q in qids:
            rec = recs.get(q)
            if rec is None:
                col.append(None)
                continue
            shown = [] if rec.pids is None else [pidx(ret, p) for p in rec.pids]
            col.append([rec.prediction, _round(rec.em), _round(rec.f1), _round(rec.contains),
                        outcome_ix[got[q]] if q in got else -1, rec.first_hit, len(shown), shown])
        r_rows.append(col)
    cfg = run.config
    data = {
        "name": cfg.name, "metric": answer_metric(cfg.metric), "modes": modes, "buckets": labels,
        "outcomes": [[o, LABELS[o]] for o in OUTCOMES], "retrievers": run.retrievers,
        "stores": [status.get(r) for r in run.retrievers], "sentences": cfg.reader.sentences,
        "q": q_rows, "r": r_rows,
    }
    return data, {"title": p_title, "text": p_text, "store": p_store}


# --- summary.md as HTML ------------------------------------------------------------------------------


def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    return s


def _image(folder: Path, alt: str, src: str) -> str:
    path = folder / src
    if not path.is_file() or path.suffix.lower() != ".png":
        return f'<p class="missing">plot {html.escape(src)} not found</p>'
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></figure>'


def slug(text: str) -> str:
    """A heading's anchor: lower case, runs of other characters as one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def markdown_html(md: str, folder: Path) -> str:
    """The subset of Markdown that summary.md uses: headings, paragraphs, lists, pipe tables, images."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if table:
            head, body = table[0], [r for r in table[1:] if not all(re.fullmatch(r":?-{3,}:?", c) for c in r)]
            out.append('<div class="tablewrap"><table class="summary"><thead><tr>'
                       + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table></div>")
            table.clear()

    for line in md.splitlines():
        s = line.strip()
        heading = re.match(r"(#{1,6})\s+(.*)", s)
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", s)
        if not s:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 1, 6)  # the page's own title is the h1
            out.append(f'<h{level} id="{slug(heading.group(2))}">{_inline(heading.group(2))}</h{level}>')
        elif image:
            flush()
            out.append(_image(folder, image.group(1), image.group(2)))
        elif s.startswith("|"):
            if para or items:
                flush()
            table.append([c.strip() for c in s.strip("|").split("|")])
        elif s.startswith("- "):
            if para or table:
                flush()
            items.append(s[2:])
        else:
            if table:
                flush()
            para.append(s)
    flush()
    return "\n".join(out)


# --- the page ----------------------------------------------------------------------------------------


def _json_script(obj, element_id: str) -> str:
    # "<" escaped inside the JSON strings, so no text can close the script element or open a comment
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def render_html(run: "Run", markdown: str, outcomes: dict[str, dict[str, str]] | None = None,
                edges: Sequence[int] | None = None, passages: bool = True) -> str:
    """The whole page as a string."""
    data, texts = report_data(run, outcomes, edges, passages)
    missing = [f"{r}: {why}" for r, why in zip(data["retrievers"], data["stores"]) if why]
    notes = "".join(f'<p class="missing">{html.escape(m)}</p>' for m in missing)
    title = f"rag evaluation {run.config.name}"
    n_rows = sum(1 for col in data["r"] for x in col if x is not None)
    if markdown.startswith("# "):  # the page header already names the run
        markdown = markdown.split("\n", 1)[1] if "\n" in markdown else ""
    attribution = f"failure-attribution-{answer_metric(run.config.metric)}"
    body = markdown_html(markdown, Path(run.folder))
    nav = f'<a href="#{attribution}">Failure attribution</a>' if f'id="{attribution}"' in body else ""
    values = {"NAV": nav, "TITLE": html.escape(title), "NAME": html.escape(run.config.name), "FOLDER": html.escape(str(run.folder)),
              "NOTES": notes, "NROWS": f"{n_rows:,}", "NQ": f"{len(data['q']):,}",
              "SUMMARY": body, "DATA": _json_script(data, "rag-data"),
              "PASSAGES": _json_script(texts, "rag-passages")}
    return re.sub(r"%([A-Z]+)%", lambda m: values[m.group(1)], PAGE)  # one pass: no value is searched again


def write_html(folder: str | Path, run: "Run | None" = None, outcomes: dict[str, dict[str, str]] | None = None,
               edges: Sequence[int] | None = None, passages: bool = True, out: str | Path | None = None) -> Path:
    """Write `folder/report.html` (or `out`) from the run's records and its summary.md (run `render` first)."""
    import os

    from rag.evaluation.run_folder import load_run

    folder = Path(folder)
    run = load_run(folder) if run is None else run
    md_path = folder / "summary.md"
    markdown = md_path.read_text(encoding="utf-8") if md_path.exists() else "*summary.md not found: run `rag eval report` first*"
    text = render_html(run, markdown, outcomes, edges, passages)
    path = Path(out) if out is not None else folder / FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
:root { --fg: #1d1d1f; --muted: #666; --line: #d8d8d8; --bg2: #f6f6f4; --accent: #2b5d9b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; }
header { padding: 14px 24px; border-bottom: 1px solid var(--line); background: var(--bg2); }
header h1 { font-size: 20px; margin: 0 0 4px; }
header nav a { margin-right: 16px; color: var(--accent); }
main { padding: 8px 24px 40px; max-width: 1500px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; } h4 { font-size: 14px; margin: 12px 0 4px; }
code { background: var(--bg2); padding: 0 3px; border-radius: 3px; }
.tablewrap { overflow-x: auto; }
table { border-collapse: collapse; }
table.summary td, table.summary th { border: 1px solid var(--line); padding: 3px 8px; text-align: left; white-space: nowrap; }
table.summary th { background: var(--bg2); }
figure { margin: 10px 0; } figure img { max-width: 100%; border: 1px solid var(--line); }
.missing { color: #8a4b00; background: #fff6e5; padding: 4px 8px; border-left: 3px solid #e0a030; }
#controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 8px 0; position: sticky; top: 0;
  background: #fff; padding: 8px 0; z-index: 2; border-bottom: 1px solid var(--line); }
#controls label { color: var(--muted); } #controls select, #controls input { font: inherit; padding: 3px 6px; }
#f-text { width: 260px; }
#count { font-weight: 600; } #pager button { font: inherit; }
table.explorer { width: 100%; table-layout: fixed; }
table.explorer th, table.explorer td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: top; }
table.explorer th { background: var(--bg2); }
table.explorer tr.row { cursor: pointer; } table.explorer tr.row:hover { background: #eef3fa; }
table.explorer tr.row.open { background: #e3ecf7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.detail td { white-space: normal; background: #fbfbfa; padding: 10px 14px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; color: #fff; }
.o-right-both { background: #1b7837; } .o-fixed { background: #5aa25a; } .o-misled { background: #d08a20; }
.o-reader-missed { background: #c0503d; } .o-retrieval-missed { background: #6f5fa8; } .o-no-evidence { background: #888; }
.ok { color: #1b7837; font-weight: 600; } .bad { color: #b0302a; }
table.modes td, table.modes th { border: 1px solid var(--line); padding: 2px 8px; text-align: left; }
ol.passages li { margin-bottom: 6px; } ol.passages li.hit { border-left: 3px solid #1b7837; padding-left: 6px; }
mark { background: #ffe066; padding: 0 1px; }
.muted { color: var(--muted); }
</style>
</head>
<body>
<header>
<h1>Evaluation <code>%NAME%</code></h1>
<div class="muted">%FOLDER% &middot; %NQ% questions &middot; %NROWS% records</div>
<nav><a href="#summary">Summary</a>%NAV%<a href="#explorer">Per-question explorer</a></nav>
</header>
<main>
%NOTES%
<section id="summary">
%SUMMARY%
</section>
<section id="explorer">
<h2>Per-question explorer</h2>
<p class="muted">One row per question and mode. Click a row for the question, the gold answers, every mode's prediction
and score, and the passages shown, with the gold answers highlighted.</p>
<div id="controls">
<label>bucket <select id="f-bucket"><option value="">all</option></select></label>
<label>mode <select id="f-mode"><option value="">all</option></select></label>
<label>outcome <select id="f-outcome"><option value="">any</option><option value="right">right</option>
<option value="wrong">wrong</option></select></label>
<label>text <input id="f-text" type="search" placeholder="question, answer, id, prediction"></label>
<span id="count"></span>
<span id="pager"><button id="prev" type="button">&larr;</button> <span id="page"></span>
<button id="next" type="button">&rarr;</button></span>
</div>
<table class="explorer">
<colgroup><col style="width:8%"><col style="width:7%"><col style="width:5%"><col style="width:8%"><col style="width:29%">
<col style="width:16%"><col style="width:4%"><col style="width:4%"><col style="width:6%"><col style="width:13%"></colgroup>
<thead><tr><th>id</th><th>bucket</th><th>count</th><th>mode</th><th>question</th><th>prediction</th><th>EM</th>
<th>F1</th><th>contains</th><th>outcome</th></tr></thead>
<tbody id="rows"></tbody>
</table>
</section>
</main>
%DATA%
%PASSAGES%
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("rag-data").textContent);
  var P = null;  // passage texts: parsed when a row is first expanded
  function passages() {
    if (P === null) P = JSON.parse(document.getElementById("rag-passages").textContent);
    return P;
  }
  var $ = function (id) { return document.getElementById(id); };
  var ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
  var Q = D.q, M = D.modes, R = D.r, NM = M.length, PAGE = 50;
  var SCORE = {em: 1, f1: 2, contains: 3}[D.metric] || 1;
  var all = [];
  for (var qi = 0; qi < Q.length; qi++) for (var mi = 0; mi < NM; mi++) if (R[mi][qi]) all.push(qi * NM + mi);
  var view = all, page = 0, hay = new Array(Q.length);
  function haystack(qi) {
    if (hay[qi] === undefined) { var q = Q[qi]; hay[qi] = (q[0] + "\n" + q[1] + "\n" + q[2].join("\n")).toLowerCase(); }
    return hay[qi];
  }
  function opt(sel, value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; sel.appendChild(o); }
  D.buckets.forEach(function (b, i) { opt($("f-bucket"), String(i), b); });
  M.forEach(function (m, i) { opt($("f-mode"), String(i), m); });
  D.outcomes.forEach(function (o, i) { opt($("f-outcome"), String(i), o[1]); });

  function apply() {
    var t0 = performance.now();
    var b = $("f-bucket").value, m = $("f-mode").value, o = $("f-outcome").value;
    var t = $("f-text").value.trim().toLowerCase(), out = [];
    for (var i = 0; i < all.length; i++) {
      var key = all[i], qi = (key / NM) | 0, mi = key % NM, r = R[mi][qi];
      if (b !== "" && Q[qi][4] !== +b) continue;
      if (m !== "" && mi !== +m) continue;
      if (o === "right") { if (!(r[SCORE] >= 1)) continue; }
      else if (o === "wrong") { if (r[SCORE] >= 1) continue; }
      else if (o !== "" && r[4] !== +o) continue;
      if (t && haystack(qi).indexOf(t) < 0 && String(r[0]).toLowerCase().indexOf(t) < 0) continue;
      out.push(key);
    }
    view = out; page = 0; render();
    document.body.dataset.applyMs = (performance.now() - t0).toFixed(1);  // for eval/bench_report_html.py
  }
  function badge(oi) { return oi < 0 ? "" : '<span class="badge o-' + D.outcomes[oi][0] + '">' + esc(D.outcomes[oi][1]) + "</span>"; }
  function num(x) { return x === 1 ? "1" : x === 0 ? "0" : x.toFixed(2); }
  function rowHtml(key) {
    var qi = (key / NM) | 0, mi = key % NM, q = Q[qi], r = R[mi][qi];
    return '<tr class="row" data-key="' + key + '"><td title="' + esc(q[0]) + '">' + esc(q[0]) + "</td><td>" +
      esc(D.buckets[q[4]]) + '</td><td class="num">' + (q[3] === null ? "" : q[3]) + "</td><td>" + esc(M[mi]) +
      '</td><td title="' + esc(q[1]) + '">' + esc(q[1]) + '</td><td class="' + (r[SCORE] >= 1 ? "ok" : "bad") +
      '" title="' + esc(r[0]) + '">' + esc(r[0]) + '</td><td class="num">' + num(r[1]) + '</td><td class="num">' +
      num(r[2]) + '</td><td class="num">' + num(r[3]) + "</td><td>" + badge(r[4]) + "</td></tr>";
  }
  function highlight(text, answers) {
    var pats = answers.filter(function (a) { return a.trim(); }).map(function (a) {
      return a.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); });
    if (!pats.length) return esc(text);
    pats.sort(function (a, b) { return b.length - a.length; });
    var re;
    try { re = new RegExp("(?<![\\p{L}\\p{N}])(?:" + pats.join("|") + ")(?![\\p{L}\\p{N}])", "giu"); }
    catch (e) { re = new RegExp(pats.join("|"), "gi"); }
    var out = "", last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m[0] === "") { re.lastIndex++; continue; }
      out += esc(text.slice(last, m.index)) + "<mark>" + esc(m[0]) + "</mark>";
      last = m.index + m[0].length;
    }
    return out + esc(text.slice(last));
  }
  function detailHtml(key) {
    var qi = (key / NM) | 0, mine = key % NM, q = Q[qi];
    var h = '<tr class="detail"><td colspan="10"><div><b>Question</b> (' + esc(q[0]) + ", bucket " + esc(D.buckets[q[4]]) +
      ", count " + (q[3] === null ? "unlinked" : q[3]) + "): " + esc(q[1]) + "</div><div><b>Gold answers</b>: " +
      q[2].map(function (a) { return "<mark>" + esc(a) + "</mark>"; }).join(" &middot; ") + "</div>";
    h += '<table class="modes"><thead><tr><th>mode</th><th>prediction</th><th>EM</th><th>F1</th><th>contains</th>' +
      "<th>outcome</th><th>first answer-bearing rank</th><th>passages shown</th></tr></thead><tbody>";
    for (var mi = 0; mi < NM; mi++) {
      var r = R[mi][qi];
      if (!r) { h += "<tr><td>" + esc(M[mi]) + '</td><td colspan="7" class="muted">no record</td></tr>'; continue; }
      var closed = M[mi] === "closed";
      h += "<tr" + (mi === mine ? ' style="font-weight:600"' : "") + "><td>" + esc(M[mi]) + '</td><td class="' +
        (r[SCORE] >= 1 ? "ok" : "bad") + '">' + esc(r[0]) + "</td><td>" + num(r[1]) + "</td><td>" + num(r[2]) +
        "</td><td>" + num(r[3]) + "</td><td>" + badge(r[4]) + "</td><td>" + (closed ? "" : (r[5] === null ? "none" : r[5])) +
        "</td><td>" + (closed ? "" : r[6]) + "</td></tr>";
    }
    h += "</tbody></table>";
    var order = [mine];
    for (var j = 0; j < NM; j++) if (j !== mine) order.push(j);
    order.forEach(function (mi) {
      var r = R[mi][qi];
      if (!r || M[mi] === "closed") return;
      var ri = D.retrievers.indexOf(M[mi].slice(4));
      h += "<h4>Passages shown with " + esc(M[mi]) + " (" + r[6] + (D.sentences ? "; the reader saw only the best " +
        D.sentences + " sentences of them" : "") + ")</h4>";
      if (ri >= 0 && D.stores[ri]) h += '<p class="missing">' + esc(D.stores[ri]) + "</p>";
      var p = passages();
      h += '<ol class="passages">';
      r[7].forEach(function (pi, rank) {
        var text = p.text[pi];
        h += "<li" + (r[5] === rank + 1 ? ' class="hit"' : "") + "><b>" + esc(p.title[pi]) + "</b> " +
          (text === null ? '<span class="muted">(text unavailable)</span>' : highlight(text, q[2])) + "</li>";
      });
      h += "</ol>";
    });
    return h + "</td></tr>";
  }
  function render() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    var start = page * PAGE, end = Math.min(view.length, start + PAGE), h = [];
    for (var i = start; i < end; i++) h.push(rowHtml(view[i]));
    $("rows").innerHTML = h.join("");
    $("count").textContent = view.length.toLocaleString("en") + " of " + all.length.toLocaleString("en") + " rows";
    $("page").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0; $("next").disabled = page >= pages - 1;
  }
  $("rows").addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.row");
    if (!tr) return;
    var next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) { next.remove(); tr.classList.remove("open"); return; }
    tr.insertAdjacentHTML("afterend", detailHtml(+tr.dataset.key));
    tr.classList.add("open");
  });
  ["f-bucket", "f-mode", "f-outcome"].forEach(function (id) { $(id).addEventListener("change", apply); });
  var timer = null;
  $("f-text").addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
  $("prev").addEventListener("click", function () { page--; render(); });
  $("next").addEventListener("click", function () { page++; render(); });
  render();
  document.body.dataset.firstRenderMs = performance.now().toFixed(1);
  document.body.dataset.ready = "1";
})();
</script>
</body>
</html>
"""
