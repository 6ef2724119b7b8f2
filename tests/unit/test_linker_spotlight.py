"""DBpedia Spotlight client against a tiny local HTTP server on 127.0.0.1 that answers like Spotlight."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import pytest

from rag.entities.linkers import LinkerUnavailableError, SpotlightLinker, make_linker
from rag.errors import BadInputError

pytest.importorskip("requests")

CALLS: list[dict] = []


class FakeSpotlight(BaseHTTPRequestHandler):
    mode = "ok"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        CALLS.append({"path": self.path, "accept": self.headers.get("Accept"), **{k: v[0] for k, v in body.items()}})
        if FakeSpotlight.mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        if FakeSpotlight.mode == "html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not json</html>")
            return
        text = body["text"][0]
        resources = []
        for name, uri in (("Dante", "Dante_Alighieri"), ("Florence", "Florence"), ("Café", "Caf%C3%A9_society")):
            i = text.find(name)
            if i >= 0:
                resources.append({"@URI": f"http://dbpedia.org/resource/{uri}", "@surfaceForm": name, "@offset": str(i),
                                  "@similarityScore": "0.93", "@support": "120"})
        out = {"@text": text, "@confidence": body["confidence"][0]}
        if resources:  # Spotlight leaves the key out when nothing is found
            out["Resources"] = resources
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server():
    srv = HTTPServer(("127.0.0.1", 0), FakeSpotlight)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/rest/annotate"
    srv.shutdown()
    srv.server_close()


def test_annotate_parses_resources(server):
    FakeSpotlight.mode = "ok"
    CALLS.clear()
    lk = make_linker("spotlight", url=server, confidence=0.4, support=20)
    texts = ["Dante was born in Florence.", "nothing", "A Café in Florence"]
    got = lk.link_batch(texts)
    assert [(m.surface, m.entity, m.start, m.end) for m in got[0]] == [("Dante", "Dante Alighieri", 0, 5), ("Florence", "Florence", 18, 26)]
    assert got[1] == []
    assert [m.entity for m in got[2]] == ["Café society", "Florence"]
    assert all(texts[i][m.start : m.end] == m.surface for i, ms in enumerate(got) for m in ms)
    assert got[0][0].score == pytest.approx(0.93)
    assert CALLS[0]["accept"] == "application/json" and CALLS[0]["confidence"] == "0.4" and CALLS[0]["support"] == "20"
    assert lk.identity() == {"name": "spotlight", "url": server, "confidence": 0.4, "support": 20}


def test_long_text_sent_in_windows(server):
    FakeSpotlight.mode = "ok"
    CALLS.clear()
    lk = SpotlightLinker(url=server, max_chars=1000)
    text = ("x " * 600) + "Dante"  # the mention lies in the second window
    got = lk.link(text)
    assert len(CALLS) == 2
    assert [(m.surface, text[m.start : m.end]) for m in got] == [("Dante", "Dante")]


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens here
    lk = SpotlightLinker(url=f"http://127.0.0.1:{port}/rest/annotate", timeout=2, retries=1)
    with pytest.raises(LinkerUnavailableError, match="cannot reach DBpedia Spotlight"):
        lk.link("Dante")


def test_server_errors(server):
    FakeSpotlight.mode = "500"
    with pytest.raises(LinkerUnavailableError, match="cannot reach"):
        SpotlightLinker(url=server, retries=1).link("Dante")
    FakeSpotlight.mode = "html"
    with pytest.raises(LinkerUnavailableError, match="did not answer JSON"):
        SpotlightLinker(url=server).link("Dante")
    FakeSpotlight.mode = "ok"
    with pytest.raises(BadInputError, match="http"):
        SpotlightLinker(url="localhost:2222")
