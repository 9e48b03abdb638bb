"""saga_sdk.Client against a stub of sagad's HTTP API (a local
http.server): what it sends, what it makes of each answer, what it tries
again. No sagad needed; test_python_sdk.sh runs the client against a real
one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from saga_sdk import APIError, Client, Signal

SAGA = "5f0c2a8e-4d1b-4f6a-9c3e-2b7d8e9f0a1b"


class Stub:
    """Answers each request with the next (status, body) of `answers` and
    keeps what it got: (method, path, headers, body)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.got: list[tuple[str, str, dict[str, str], Any]] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                stub.got.append((self.command, self.path, dict(self.headers),
                                 json.loads(raw) if raw else None))
                status, body = stub.answers.pop(0)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status < 300
                                 else "application/problem+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.server.shutdown()
    s.server.server_close()


def problem(status: int, code: str, detail: str) -> tuple[int, dict[str, Any]]:
    return status, {"status": status, "code": code, "detail": detail}


def test_signal_sends_what_the_api_takes(stub: Stub) -> None:
    stub.answers = [(202, {"saga_id": SAGA, "name": "approval", "id": "ann-1",
                           "duplicate": False}),
                    (200, {"saga_id": SAGA, "name": "approval", "id": "ann-1",
                           "duplicate": True})]
    c = Client(stub.url, token="tok")
    s = c.signal(SAGA, "approval", {"approved": True}, id="ann-1")
    assert s == Signal(saga_id=SAGA, name="approval", id="ann-1", duplicate=False)
    again = c.signal(SAGA, "approval", {"approved": True}, id="ann-1")
    assert again.duplicate and again.id == "ann-1"
    method, path, headers, body = stub.got[0]
    assert (method, path) == ("POST", f"/v1/sagas/{SAGA}/signals/approval")
    assert headers["Authorization"] == "Bearer tok"
    assert headers["Content-Type"] == "application/json"
    assert body == {"payload": {"approved": True}, "id": "ann-1"}


def test_signal_failed_verdict_and_an_id_of_its_own(stub: Stub) -> None:
    stub.answers = [problem(503, "database_unavailable", "down"),
                    (202, {"saga_id": SAGA, "name": "approval", "duplicate": False})]
    c = Client(stub.url, backoff_s=0.001)
    s = c.signal(SAGA, "approval", failed=True, reason="over budget")
    first, second = stub.got[0][3], stub.got[1][3]
    assert first == second, "a retry sends the same id"
    assert first["verdict"] == "failed" and first["reason"] == "over budget"
    assert "payload" not in first and first["id"].startswith("py-")
    assert s.id == first["id"] and not s.duplicate


@pytest.mark.parametrize("status,code", [(409, "refused"), (404, "not_found"),
                                         (422, "invalid_field")])
def test_signal_refusals_are_not_retried(stub: Stub, status: int, code: str) -> None:
    stub.answers = [problem(status, code, "no")]
    with pytest.raises(APIError) as e:
        Client(stub.url, backoff_s=0.001).signal(SAGA, "approval", {"x": 1})
    assert (e.value.status, e.value.code, e.value.detail) == (status, code, "no")
    assert len(stub.got) == 1


def test_signal_quotes_the_name(stub: Stub) -> None:
    stub.answers = [problem(404, "not_found", "not a signal name")]
    with pytest.raises(APIError):
        Client(stub.url).signal(SAGA, "bad name/x")
    assert stub.got[0][1] == f"/v1/sagas/{SAGA}/signals/bad%20name%2Fx"


def test_start_retries_a_409_with_the_same_key(stub: Stub) -> None:
    stub.answers = [problem(409, "in_flight", "the same key"),
                    (201, {"id": SAGA, "name": "order", "status": "pending"})]
    s = Client(stub.url, backoff_s=0.001).start("order", {"a": 1}, idempotency_key="k-1")
    assert s.created and s.id == SAGA
    assert [g[2]["Idempotency-Key"] for g in stub.got] == ["k-1", "k-1"]
