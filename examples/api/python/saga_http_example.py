#!/usr/bin/env python3
"""Start sagas and wait for their end over sagad's HTTP API (docs/API.md),
with nothing but Python's standard library.

    SAGA_API_URL=http://127.0.0.1:9464 SAGA_API_TOKEN=sgt_... \\
        python3 saga_http_example.py 3

starts 3 "order" sagas (the demo's data: examples/seed.sql), waits for each,
prints "ID BUSINESS_KEY STATUS" per saga, then finds the first by its
business key. Exits 1 on any unexpected answer.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

Saga = dict[str, Any]
RUNNING = {"pending", "running", "compensating"}
RETRIED = {409, 503}  # 409: the same key was in flight; 503: database down


class APIError(Exception):
    """An answer that is not the one asked for: the problem document's
    status, code and detail (or what was received instead)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


def _problem(status: int, raw: bytes) -> APIError:
    """An error answer's problem document (application/problem+json)."""
    try:
        p = json.loads(raw)
        return APIError(status, str(p["code"]), str(p["detail"]))
    except (ValueError, KeyError, TypeError):
        return APIError(status, "?", raw[:200].decode(errors="replace"))


class SagaClient:
    """The API at base_url (http://host:port), called with a bearer token."""

    def __init__(self, base_url: str, token: str, attempts: int = 6,
                 backoff: float = 0.2) -> None:
        self.base_url, self.token = base_url.rstrip("/"), token
        self.attempts, self.backoff = attempts, backoff

    def _call(self, method: str, path: str, body: Saga | None = None,
              headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
        """One request, retried on 409/503 and connection errors with
        exponential backoff (the same headers, so the same
        Idempotency-Key). Answers (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Authorization": f"Bearer {self.token}",
                "Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(self.base_url + path, data, hdrs,
                                         method=method)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as res:
                    status, raw = res.status, res.read()
                try:
                    return status, json.loads(raw)
                except ValueError:
                    raise _problem(status, raw) from None
            except urllib.error.HTTPError as e:
                if e.code not in RETRIED or attempt == self.attempts:
                    raise _problem(e.code, e.read()) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt == self.attempts:
                    raise APIError(0, "unreachable", str(e)) from None
            time.sleep(min(self.backoff * 2 ** (attempt - 1), 5.0) * random.uniform(0.8, 1.2))
        raise AssertionError("not reached")

    def start(self, definition: str, input: Saga, business_key: str,
              idempotency_key: str) -> Saga:
        """Start a saga (201), or get the one this key started (200)."""
        status, saga = self._call(
            "POST", "/v1/sagas",
            {"definition": definition, "input": input, "business_key": business_key},
            {"Idempotency-Key": idempotency_key})
        if status not in (200, 201) or not isinstance(saga, dict) or "id" not in saga:
            raise APIError(status, "unexpected", f"start answered {saga!r}")
        return saga

    def wait(self, id: str, timeout: float) -> Saga:
        """The saga once it has ended, or as it is after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            asked = time.monotonic()
            left = max(1, min(30, round(deadline - asked)))
            _, saga = self._call("GET", f"/v1/sagas/{urllib.parse.quote(id)}?wait={left}s",
                                 timeout=left + 10)
            if saga["status"] not in RUNNING or time.monotonic() >= deadline:
                return dict(saga)
            time.sleep(max(0.0, asked + 0.5 - time.monotonic()))  # never more than 2/s

    def find_by_business_key(self, key: str) -> list[Saga]:
        q = urllib.parse.urlencode({"business_key": key})
        _, page = self._call("GET", f"/v1/sagas?{q}")
        return list(page["sagas"])


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 3
    client = SagaClient(os.environ["SAGA_API_URL"], os.environ["SAGA_API_TOKEN"])
    order = {"customer_id": "alice", "sku": "widget", "quantity": 1, "amount": 100}
    run = uuid.uuid4().hex[:8]
    try:
        started = []
        for i in range(count):
            key = f"order-py-{run}-{i}"  # the business key, and the retry key
            started.append((client.start("order", order, key, key)["id"], key))
        again = client.start("order", order, started[0][1], started[0][1])
        if again["id"] != started[0][0]:
            raise APIError(200, "unexpected", f"a retry started another saga: {again['id']}")
        bad = []
        for sid, key in started:
            saga = client.wait(sid, timeout=60)
            print(sid, saga.get("business_key"), saga["status"], flush=True)
            if saga["status"] != "completed" or saga.get("business_key") != key:
                bad.append(sid)
        found = [s["id"] for s in client.find_by_business_key(started[0][1])]
        print(f"business key {started[0][1]}: {' '.join(found)}")
        if found != [started[0][0]]:
            bad.append(f"the search for {started[0][1]}")
    except APIError as e:
        bad = [str(e)]
    if bad:
        print(f"saga_http_example: unexpected: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
