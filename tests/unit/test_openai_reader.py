"""The openai reader backend against a fake OpenAI-compatible server (tests/unit/openai_fake.py).

Greedy request fields, answers in order under bounded concurrency, retries with backoff on 429/5xx and
connection errors, clear 4xx errors, the model-name check, token counting (server endpoints, local
tokenizer, estimate), chat turns, continuation scoring and its refusals, and the API key kept out of every
file of a run. The same backend against a real llama.cpp server: tests/integration/test_openai_server_real.py.
"""
from __future__ import annotations

import json
import logging
import threading

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.errors import BadInputError
from rag.readers import BUILTIN_DEMOS, FORMATS, answer, load_reader
from rag.readers.base import Score, ScoringNotSupported
from rag.readers.fake import FakeReader
from rag.readers.http import JsonClient, ServerRequestError, ServerUnavailableError, safe_url, server_message
from rag.readers.openai_compat import chat_messages, estimate_tokens
from rag.types import Passage, Question
from tests.unit.openai_fake import FakeServer, free_port, word_logprob, words

pytest.importorskip("httpx", reason="pip install 'rag[openai]'")

KNOWN = {"who wrote hamlet": "William Shakespeare", "what is the capital of norway": "Oslo"}
QS = [Question(f"q{i}", q, (a,)) for i, (q, a) in enumerate(KNOWN.items())]


def fast(**kw):
    """Options that keep retries quick in tests."""
    return {"backoff": 0.01, "max_retries": 2, **kw}


def test_generate_sends_greedy_requests_and_returns_first_lines():
    with FakeServer(known=KNOWN) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, **fast())
        preds = answer(r, QS)
        assert [p.answer for p in preds] == ["William Shakespeare", "Oslo"]  # "\nQ: next" cut off
        bodies = [b for m, p, b, _ in srv.requests if p == "/v1/completions"]
        fake = FakeReader(known=KNOWN)
        answer(fake, QS)
        assert sorted(b["prompt"] for b in bodies) == sorted(fake.calls[0])  # the exact prompts the other backends build
        for b in bodies:
            assert (b["temperature"], b["top_p"], b["stop"], b["max_tokens"], b["seed"], b["n"]) == (0.0, 1.0, ["\n"], 16, 0, 1)
            assert "repeat_penalty" not in b  # a vLLM server: its default is already 1.0
        assert r.n_ctx == 4096  # max_model_len from /v1/models
        assert r.name.startswith("fake-model via http://127.0.0.1:") and "token counts: server POST /tokenize (vLLM)" in r.name
        r.close()


def test_llama_cpp_servers_get_repeat_penalty_one():
    with FakeServer(known=KNOWN, owned_by="me", tokenize="extras") as srv:  # llama-cpp-python's server
        r = load_reader("fake-model", backend="openai", base_url=srv.url)
        r.generate("Q: who wrote hamlet\nA:")
        body = [b for m, p, b, _ in srv.requests if p == "/v1/completions"][0]
        assert body["repeat_penalty"] == 1.0 and r.family == "llama-cpp-python"
        assert r.token_counts == "server POST /extras/tokenize (llama-cpp-python)" and r.n_ctx == 4096
        r.close()


def test_answers_stay_in_order_under_bounded_concurrency():
    prompts = [f"Q: question number {i}\nA:" for i in range(20)]
    known = {f"question number {i}": f"answer {i}" for i in range(20)}
    with FakeServer(known=known, delay=0.01, hold=4) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, max_concurrency=4)
        out = r.generate_batch(prompts)
        assert [g.text for g in out] == [f"answer {i}" for i in range(20)]
        assert srv.peak == 4  # in flight together, never more (unbounded, all 20 would pile up while held)
        r.close()
    with FakeServer(known=known, hold=8) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url)
        r.generate_batch(prompts[:12])
        assert srv.peak == 8  # the default
        r.close()


def test_5xx_and_429_are_retried_with_backoff_and_retry_after():
    with FakeServer(known=KNOWN, fail={"/v1/completions": [500, 503]}) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, **fast(max_retries=3))
        assert r.generate("Q: who wrote hamlet\nA:").text == "William Shakespeare"
        assert srv.paths().count("/v1/completions") == 3
        assert [why.split(":")[0] for why, _ in r.client.retries] == ["HTTP 500 Internal Server Error", "HTTP 503 Service Unavailable"]
        waits = [w for _, w in r.client.retries]
        assert 0.005 <= waits[0] <= 0.015 and 0.01 <= waits[1] <= 0.03  # exponential, jittered
        r.close()
    with FakeServer(known=KNOWN, fail={"/v1/completions": [429]}, retry_after=0.2) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, **fast())
        assert r.generate("Q: who wrote hamlet\nA:").text == "William Shakespeare"
        assert r.client.retries[0] == ("HTTP 429 Too Many Requests: injected failure 429", 0.2)  # the server's Retry-After
        r.close()


def test_persistent_500_is_a_clear_error_after_bounded_retries():
    with FakeServer(known=KNOWN, fail={"/v1/completions": [500] * 10}) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, **fast(max_retries=3))
        with pytest.raises(ServerUnavailableError) as e:
            r.generate_batch(["Q: who wrote hamlet\nA:"])
        assert srv.paths().count("/v1/completions") == 4  # 1 + 3 retries, then no more
        msg = str(e.value)
        assert f"POST {srv.url}/completions: HTTP 500 Internal Server Error: injected failure 500 (after 4 tries)" in msg
        r.close()


def test_4xx_names_the_status_and_the_servers_message_without_retrying():
    with FakeServer(known=KNOWN, fail={"/v1/completions": [400]}) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, **fast())
        with pytest.raises(ServerRequestError, match=r"answered HTTP 400 Bad Request: injected failure 400") as e:
            r.generate("Q: x\nA:")
        assert e.value.status == 400 and srv.paths().count("/v1/completions") == 1
        r.close()


def test_wrong_model_name_is_refused_at_load_and_by_the_server():
    with FakeServer(models=("a-model", "b-model")) as srv:
        with pytest.raises(BadInputError, match=r"model 'nope' is not served at http://127.0.0.1:\d+/v1; it serves: a-model, b-model"):
            load_reader("nope", backend="openai", base_url=srv.url)
        with pytest.raises(BadInputError, match="serves several models; name one with --model: a-model, b-model"):
            load_reader(None, backend="openai", base_url=srv.url)
    with FakeServer(models=("only-one",)) as srv:
        r = load_reader("", backend="openai", base_url=srv.url)
        assert r.model == "only-one"
        srv.models = ["renamed"]  # the server's own 404 for an unknown model, mid-run
        with pytest.raises(ServerRequestError, match=r"HTTP 404 Not Found: The model `only-one` does not exist"):
            r.generate("Q: x\nA:")
        r.close()


def test_refused_connection_fails_fast_at_load_and_is_retried_mid_run():
    port = free_port()
    with pytest.raises(ServerUnavailableError, match=rf"cannot connect to the model server at http://127.0.0.1:{port}/v1: "
                                                    r"connection refused"):
        load_reader("m", backend="openai", base_url=f"http://127.0.0.1:{port}/v1")
    srv = FakeServer(known=KNOWN).__enter__()
    r = load_reader("fake-model", backend="openai", base_url=srv.url, **fast(max_retries=2))
    srv.__exit__(None, None, None)  # the server goes away mid-run
    with pytest.raises(ServerUnavailableError, match=r"connection refused .*\(after 3 tries\)"):
        r.generate_batch(["Q: who wrote hamlet\nA:"] * 3)
    assert len(r.client.retries) >= 2
    r.close()


def test_first_failure_stops_the_other_requests_retries():
    with FakeServer(known=KNOWN, fail={"/v1/completions": [400] + [503] * 50}, delay=0.01) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, backoff=0.5, max_retries=5, max_concurrency=4)
        import time

        t = time.perf_counter()
        with pytest.raises(ServerRequestError):
            r.generate_batch(["Q: x\nA:"] * 4)
        assert time.perf_counter() - t < 2.0  # not 4 requests x 5 retries of backoff
        r.close()


def test_token_counts_server_endpoints_tokenizer_and_estimate(monkeypatch, caplog):
    text = "Q: who wrote the novel pride and prejudice\nA:"
    for kind, how in [("vllm", "server POST /tokenize (vLLM)"), ("llamacpp", "server POST /tokenize (llama.cpp)"),
                      ("extras", "server POST /extras/tokenize (llama-cpp-python)")]:
        with FakeServer(tokenize=kind, owned_by="x") as srv:
            r = load_reader("fake-model", backend="openai", base_url=srv.url)
            assert r.token_counts == how and r.count_tokens([text, "a b"]) == [len(words(text)) + 1, 3]
            r.close()
    with FakeServer(tokenize=None, owned_by="library") as srv:  # Ollama: no tokenize endpoint
        with caplog.at_level(logging.WARNING):
            r = load_reader("fake-model", backend="openai", base_url=srv.url)
        assert "prompts are fitted with an estimate" in caplog.text
        assert r.token_counts == "estimate ceil(UTF-8 bytes / 3) + 1" and r.count_tokens([text]) == [estimate_tokens(text)]
        assert estimate_tokens("abcdef") == 3 and estimate_tokens("é") == 2
        assert r.n_ctx == 4096 and r.family == "ollama"
        r.close()

        class Tok:
            def __call__(self, text, add_special_tokens=True):
                return {"input_ids": [0] * (len(text.split()) + 7)}

        transformers = pytest.importorskip("transformers")
        asked = []
        monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda name: asked.append(name) or Tok())
        r = load_reader("fake-model", backend="openai", base_url=srv.url, tokenizer="/models/tok")
        assert asked == ["/models/tok"] and r.token_counts == "local tokenizer /models/tok" and r.count_tokens(["a b"]) == [9]
        r.close()


def test_estimated_counts_still_fit_prompts():
    # a long passage is truncated to fit n_ctx by the estimate (over-counting: the real prompt is shorter)
    long = Passage("p#0", "p", "Long", " ".join(["word"] * 2000))
    with FakeServer(tokenize=None, known=KNOWN) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, n_ctx=512)
        (p,) = answer(r, QS[:1], [[long]])
        assert p.passages_truncated == 1 and p.prompt_tokens <= 512 - 16
        assert len(words(srv.requests[-1][2]["prompt"])) + 1 <= 512 - 16
        r.close()


def test_chat_messages_turn_prompts_of_every_format_into_turns():
    p = Passage("x#0", "x", "Oslo", "Oslo is the capital of Norway.")
    kandpal = FORMATS.get("kandpal").render(BUILTIN_DEMOS[:2], "what is the capital of norway", [p])
    msgs = chat_messages(kandpal)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"] == ("Passage: Pride and Prejudice: " + BUILTIN_DEMOS[0].passage.text
                                  + "\nQ: who wrote the novel pride and prejudice")
    assert msgs[1]["content"] == "Jane Austen"
    assert msgs[-1]["content"] == "Passage: Oslo: Oslo is the capital of Norway.\nQ: what is the capital of norway"
    closed = chat_messages(FORMATS.get("instruct").render(BUILTIN_DEMOS[:1], "who wrote hamlet", []))
    assert closed[0]["content"].startswith("Answer each question with a short phrase") and closed[0]["content"].endswith(
        "\n\nQ: who wrote the novel pride and prejudice")
    assert closed[-1] == {"role": "user", "content": "Q: who wrote hamlet"}
    first = chat_messages(FORMATS.get("passages-first").render(BUILTIN_DEMOS[:1], "q?", [p]))
    assert first[0]["content"].startswith("Passage: Oslo: Oslo is the capital") and len(first) == 3
    assert chat_messages(FORMATS.get("kandpal").render([], "who wrote hamlet", [])) == [{"role": "user", "content": "Q: who wrote hamlet"}]
    with pytest.raises(BadInputError, match="bare 'A:'"):
        chat_messages("Tell me a joke")


def test_chat_mode_sends_turns_and_counts_template_tokens():
    with FakeServer(known=KNOWN) as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url, chat=True)
        ps = [[], [Passage("n#0", "n", "Norway", "Oslo is the capital.")]]
        preds = answer(r, QS, ps)
        assert [p.answer for p in preds] == ["William Shakespeare", "Norway"]
        bodies = [b for m, p, b, _ in srv.requests if p == "/v1/chat/completions"]
        assert len(bodies) == 2 and all("prompt" not in b and b["stop"] == ["\n"] and b["temperature"] == 0.0 for b in bodies)
        assert [m["role"] for m in bodies[0]["messages"]] == ["user", "assistant"] * 3 + ["user"]
        prompt = FORMATS.get("kandpal").render(BUILTIN_DEMOS[:3], "who wrote hamlet", [])
        raw = len(words(prompt)) + 1
        assert r.count_tokens([prompt, "Passage: a: b\n"]) == [raw + 16 + 8 * 7, 4]  # 7 turns; a passage block: none
        with pytest.raises(ScoringNotSupported, match="needs the completions endpoint"):
            r.score_batch(["Q: x\nA:"], [" y"])
        r.close()


def test_score_batch_reads_the_continuations_tokens_by_offset():
    prompt = "Q: who wrote the novel pride and prejudice\nA:"
    with FakeServer() as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url)
        s1, s2 = r.score_batch([prompt, prompt], [" Jane Austen", " Charlotte Emily Bronte"])
        assert s1 == Score(word_logprob(" Jane") + word_logprob(" Austen"), (-0.4, -0.6), (" Jane", " Austen"))
        assert s2.tokens == (" Charlotte", " Emily", " Bronte") and s2.logprob == pytest.approx(-2.0)
        bodies = [b for m, p, b, _ in srv.requests if p == "/v1/completions"]
        assert all(b["echo"] is True and b["logprobs"] == 1 and b["max_tokens"] == 1 for b in bodies)
        # the alignment probe once, then one request per continuation
        assert sorted(b["prompt"] for b in bodies) == sorted(["1, 2, 3, 4, 5, 6, 7, 8, 9", prompt + " Jane Austen",
                                                               prompt + " Charlotte Emily Bronte"])
        with pytest.raises(BadInputError, match="one per prompt"):
            r.score_batch([prompt], [])
        r.close()


def test_scoring_refusals_are_clear():
    with FakeServer(logprobs="shifted") as srv:  # as llama-cpp-python's server with a model without BOS
        r = load_reader("fake-model", backend="openai", base_url=srv.url)
        with pytest.raises(ScoringNotSupported, match=r"not supported by this server .*shifted by one token"):
            r.score_batch(["Q: x\nA:"], [" y"])
        r.close()
    with FakeServer(logprobs="reject") as srv:
        r = load_reader("fake-model", backend="openai", base_url=srv.url)
        with pytest.raises(ScoringNotSupported, match=r"not supported by this server \(.*\): HTTP 400: echo is not supported"):
            r.score_batch(["Q: x\nA:"], [" y"])
        r.close()
    from tests.unit.test_gold_logprob import NoScoring

    with pytest.raises(ScoringNotSupported, match="the NoScoring reader backend does not score continuations"):
        NoScoring().score_batch(["Q: x\nA:"], [" y"])


def test_options_are_checked_and_no_api_key_option_exists(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BadInputError, match="needs the server's address: --base-url"):
        load_reader("m", backend="openai")
    with pytest.raises(BadInputError, match="takes no api_key option"):
        load_reader("m", backend="openai", base_url="http://127.0.0.1:1/v1", api_key="sk-x")
    with pytest.raises(BadInputError, match="unknown option.*: temperature"):
        load_reader("m", backend="openai", base_url="http://127.0.0.1:1/v1", temperature=0.7)
    with pytest.raises(BadInputError, match="must be an http"):
        load_reader("m", backend="openai", base_url="127.0.0.1:8080")
    monkeypatch.delenv("RAG_NO_SUCH_KEY", raising=False)
    with pytest.raises(BadInputError, match=r"\$RAG_NO_SUCH_KEY, which is not set"):
        load_reader("m", backend="openai", base_url="http://127.0.0.1:1/v1", api_key_env="RAG_NO_SUCH_KEY")
    with FakeServer() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url.removesuffix("/v1"))  # the root: /v1 is added
        r = load_reader("fake-model", backend="openai", device="cuda")  # device: the server's business
        assert r.base_url == srv.url
        r.close()


def test_helpers():
    assert safe_url("http://user:secret@host:8000/v1?key=abc") == "http://host:8000/v1"
    assert server_message(b'{"error": {"message": "bad  model"}}') == "bad model"
    assert server_message('{"detail": "Not Found"}') == "Not Found"
    assert server_message("plain text") == "plain text"
    with pytest.raises(BadInputError):
        JsonClient("http://x", max_retries=-1)


def test_api_key_goes_in_the_header_only(monkeypatch, caplog):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    secret = "sk-test-0123456789-secret"
    monkeypatch.setenv("RAG_TEST_KEY", secret)
    with FakeServer(key=secret, known=KNOWN) as srv:
        with pytest.raises(ServerRequestError, match="HTTP 401 Unauthorized: Invalid API key"):
            load_reader("fake-model", backend="openai", base_url=srv.url)  # OPENAI_API_KEY unset: no key sent
        monkeypatch.setenv("OPENAI_API_KEY", secret)  # the default variable
        r = load_reader("fake-model", backend="openai", base_url=srv.url)
        r.close()
        monkeypatch.delenv("OPENAI_API_KEY")
        with caplog.at_level(logging.DEBUG):
            r = load_reader("fake-model", backend="openai", base_url=srv.url, api_key_env="RAG_TEST_KEY")
            assert r.generate("Q: who wrote hamlet\nA:").text == "William Shakespeare"
        assert srv.requests[-1][3]["Authorization"] == f"Bearer {secret}"
        assert secret not in caplog.text and secret not in r.name and secret not in json.dumps(vars(r), default=str)
        r.close()


# -- through the CLI -------------------------------------------------------------------------------------------

def test_rag_ask_through_a_server():
    with FakeServer(known=KNOWN) as srv:
        r = CliRunner().invoke(main, ["ask", "who wrote hamlet", "--backend", "openai", "--base-url", srv.url, "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out["closed"]["answer"] == "William Shakespeare" and out["model"] == "fake-model" and out["server"] == srv.url
        r = CliRunner().invoke(main, ["ask", "who wrote hamlet", "--backend", "openai", "--base-url", srv.url, "--chat"])
        assert r.exit_code == 0 and r.output.strip() == "closed-book:          William Shakespeare"
        assert srv.paths()[-1] == "/v1/chat/completions"
    r = CliRunner().invoke(main, ["ask", "who wrote hamlet", "--backend", "fake", "--base-url", "http://x/v1"])
    assert r.exit_code == 2 and "apply to the openai backend only" in r.output


@pytest.mark.parametrize("case", ["wrong-model", "refused", "500", "401"])
def test_rag_ask_errors_are_one_clear_line(case, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = FakeServer(known=KNOWN, retry_after=0, key="k" if case == "401" else None,
                     fail={"/v1/models": [500] * 10} if case == "500" else None).__enter__()
    url = f"http://127.0.0.1:{free_port()}/v1" if case == "refused" else srv.url
    model = "nope" if case == "wrong-model" else "fake-model"
    try:
        r = CliRunner().invoke(main, ["ask", "who wrote hamlet", "--backend", "openai", "--base-url", url, "--model", model])
    finally:
        srv.__exit__(None, None, None)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    expected = {
        "wrong-model": f"error: model 'nope' is not served at {srv.url}; it serves: fake-model",
        "refused": f"error: cannot connect to the model server at {url}: connection refused",
        "500": f"error: GET {srv.url}/models: HTTP 500 Internal Server Error: injected failure 500 (after 6 tries)",
        "401": f"error: GET {srv.url}/models answered HTTP 401 Unauthorized: Invalid API key",
    }[case]
    assert r.output.startswith(expected), r.output
    if case == "500":
        assert srv.paths("GET").count("/v1/models") == 6  # 1 + 5 retries (Retry-After: 0)


# -- eval runs -------------------------------------------------------------------------------------------------

from tests.unit.test_eval_run import KNOWN as WORLD_KNOWN, world, write_config  # noqa: E402,F401  (the tiny world)


def eval_config(world, out, srv_url, **options):
    return write_config(world, out, reader={"model": "fake-model", "backend": "openai", "shots": 2,
                                            "options": {"base_url": srv_url, **options}})


def test_eval_run_through_a_server_equals_the_fake_reader_and_keeps_the_key_out(world, tmp_path, monkeypatch):
    from rag.evaluation.config import load_config
    from rag.evaluation.records import RecordStore
    from rag.evaluation.runner import run_eval

    secret = "sk-live-abcdef-777"
    monkeypatch.setenv("RAG_EVAL_KEY", secret)
    ref = run_eval(load_config(write_config(world, tmp_path / "ref")), progress=False, reader=FakeReader(known=WORLD_KNOWN))
    want = {k: r.prediction for k, r in RecordStore(ref.folder / "records.jsonl").load().items()}
    with FakeServer(known=WORLD_KNOWN, key=secret) as srv:
        cfg = eval_config(world, tmp_path / "run", srv.url, api_key_env="RAG_EVAL_KEY")
        r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress"])
        assert r.exit_code == 0, r.output
    got = {k: r.prediction for k, r in RecordStore(tmp_path / "run" / "records.jsonl").load().items()}
    assert got == want and len(got) == 24
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["reader"]["options"] == {"base_url": srv.url, "api_key_env": "RAG_EVAL_KEY"}
    assert "token counts: server POST /tokenize (vLLM)" in manifest["reader_info"]["name"]
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(files) >= 4 and not any(secret.encode() in p.read_bytes() for p in files)


def test_eval_run_500_is_a_clear_error_and_the_run_resumes(world, tmp_path):
    from rag.evaluation.records import RecordStore

    with FakeServer(known=WORLD_KNOWN) as srv:
        cfg = eval_config(world, tmp_path / "run", srv.url, max_retries=1, backoff=0.01)
        # the third completion request and all after it fail: batches 1 and part of 2 are done
        n_ok = [0]
        lock = threading.Lock()
        orig = srv._completion

        def flaky(body):
            with lock:
                n_ok[0] += 1
                if n_ok[0] > 10:
                    srv.fail["/v1/completions"] = [500] * 1000
            return orig(body)

        srv._completion = flaky
        r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress"])
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert "error: POST" in r.output and "HTTP 500 Internal Server Error: injected failure 500 (after 2 tries)" in r.output
        partial = RecordStore(tmp_path / "run" / "records.jsonl").load()
        assert 0 < len(partial) < 24
        srv.fail.clear()
        srv._completion = orig
        r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress"])
        assert r.exit_code == 0, r.output
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    keys = [(json.loads(x)["qid"], json.loads(x)["mode"]) for x in lines]
    assert len(keys) == 24 and len(set(keys)) == 24
