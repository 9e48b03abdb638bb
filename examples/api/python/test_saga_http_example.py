"""The example's client against a tiny local server that answers what each
test queues: a 503 is retried with the same Idempotency-Key, a problem
document is shown and not retried, wait() long-polls until the saga ends."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from saga_http_example import APIError, SagaClient

Answer = tuple[int, dict[str, Any]]


class Server(ThreadingHTTPServer):
    answers: list[Answer]
    seen: list[tuple[str, str, dict[str, str], bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        status, doc = self.server.answers.pop(0)
        raw = json.dumps(doc).encode()
        self.send_response(status)
        ctype = "application/json" if status < 400 else "application/problem+json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.answers, srv.seen = [], []
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client(srv: Server) -> SagaClient:
    return SagaClient(f"http://127.0.0.1:{srv.server_address[1]}", "sgt_test", backoff=0.01)


def problem(status: int, code: str, detail: str) -> Answer:
    return status, {"type": f"urn:saga:problem:{code}", "status": status, "code": code, "detail": detail}


def test_start_retries_503_with_the_same_key(server: Server) -> None:
    server.answers = [problem(503, "database_unavailable", "down"), (201, {"id": "s1", "status": "pending"})]
    saga = client(server).start("order", {"sku": "widget"}, "order-4711", "key-1")
    assert saga["id"] == "s1"
    assert len(server.seen) == 2 and server.seen[0][3] == server.seen[1][3]
    for method, path, headers, body in server.seen:
        assert (method, path, headers["Idempotency-Key"]) == ("POST", "/v1/sagas", "key-1")
        assert headers["Authorization"] == "Bearer sgt_test"
        assert json.loads(body) == {"definition": "order", "input": {"sku": "widget"},
                                    "business_key": "order-4711"}


def test_a_problem_is_shown_not_retried(server: Server) -> None:
    server.answers = [problem(422, "unknown_definition", 'no definition "ordr" is deployed')]
    with pytest.raises(APIError, match='HTTP 422 unknown_definition: no definition "ordr"'):
        client(server).start("ordr", {}, "k", "k")
    assert len(server.seen) == 1


def test_wait_polls_until_the_saga_ends(server: Server) -> None:
    server.answers = [(200, {"id": "s1", "status": "running"}), (200, {"id": "s1", "status": "completed"})]
    assert client(server).wait("s1", timeout=5)["status"] == "completed"
    assert [p for _, p, _, _ in server.seen][0] == "/v1/sagas/s1?wait=5s"
    assert len(server.seen) == 2 and server.seen[1][1].startswith("/v1/sagas/s1?wait=")
