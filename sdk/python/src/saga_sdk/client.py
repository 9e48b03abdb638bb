"""A client of sagad's HTTP API (docs/API.md): start a saga, wait for its
end, find sagas by business key, send a signal to a waiting step. Standard library only: one request at a
time needs no HTTP library, and the SDK's dependencies stay the two that
matter (confluent-kafka and psycopg)."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

RUNNING = frozenset({"pending", "running", "compensating"})
ENDED = frozenset({"completed", "compensated", "failed", "resolved", "rejected"})
_RETRIED = frozenset({409, 503})  # 409: the same key in flight; 503: sagad's database down


class APIError(Exception):
    """An answer that is not the one asked for: the problem document's
    status, code and detail (docs/API.md, "Errors")."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class WaitTimeout(TimeoutError):
    """The saga had not ended when the wait's time was up; .saga is how it was."""

    def __init__(self, saga: Saga, seconds: float) -> None:
        super().__init__(f"saga {saga.id} is still {saga.status} after {seconds:g} s")
        self.saga = saga


@dataclass(frozen=True)
class Signal:
    """What POST /v1/sagas/{id}/signals/{name} answered: the signal's id
    (the one given, or the one sagad made) and whether that id had been
    sent before (absorbed: a resend is harmless)."""

    saga_id: str
    name: str
    id: str
    duplicate: bool


@dataclass(frozen=True)
class Saga:
    """A saga as the API shows it; `raw` holds every field."""

    id: str
    name: str
    status: str
    business_key: str | None
    raw: dict[str, Any] = field(repr=False)
    created: bool = False  # start(): a new saga (201), not one this key started before (200)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.raw.get("steps") or [])

    @classmethod
    def from_json(cls, o: dict[str, Any], created: bool = False) -> Saga:
        return cls(id=str(o["id"]), name=str(o.get("name", "")), status=str(o["status"]),
                   business_key=o.get("business_key"), raw=o, created=created)


def _problem(status: int, raw: bytes) -> APIError:
    try:
        p = json.loads(raw)
        return APIError(status, str(p["code"]), str(p["detail"]))
    except (ValueError, KeyError, TypeError):
        return APIError(status, "?", raw[:200].decode(errors="replace"))


class Client:
    """The API at base_url (http://host:port), with a bearer token when
    given. A 409, a 503 or a connection error is tried again, at most
    `attempts` times in all, 0.2 s doubling to 5 s apart, with the same
    headers (so the same Idempotency-Key: never a second saga)."""

    def __init__(self, base_url: str, token: str | None = None, *, attempts: int = 6,
                 backoff_s: float = 0.2, timeout_s: float = 10.0) -> None:
        self.base_url, self.token = base_url.rstrip("/"), token
        self.attempts, self.backoff_s, self.timeout_s = max(attempts, 1), backoff_s, timeout_s

    def _call(self, method: str, path: str, body: Any = None,
              headers: dict[str, str] | None = None,
              timeout_s: float | None = None,
              retried: frozenset[int] = _RETRIED) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Accept": "application/json", **(headers or {})}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(self.base_url + path, data, hdrs, method=method)
            try:
                with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as res:
                    status, raw = res.status, res.read()
                try:
                    return status, json.loads(raw)
                except ValueError:
                    raise _problem(status, raw) from None
            except urllib.error.HTTPError as e:
                if e.code not in retried or attempt == self.attempts:
                    raise _problem(e.code, e.read()) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt == self.attempts:
                    raise APIError(0, "unreachable", f"{method} {self.base_url}{path}: {e} "
                                   f"({attempt} tries)") from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def start(self, definition: str, input: dict[str, Any] | None = None, *,
              business_key: str | None = None, idempotency_key: str | None = None,
              traceparent: str | None = None) -> Saga:
        """POST /v1/sagas: start a saga of the latest version of definition.
        Without an idempotency_key one is made, so that the retries above
        never start a second saga; give your own (the order's number) to
        make a retry of your caller safe too. Returns the saga (often still
        "pending"); .created is False when the key had started it before."""
        body: dict[str, Any] = {"definition": definition, "input": input or {}}
        if business_key is not None:
            body["business_key"] = business_key
        headers = {"Idempotency-Key": idempotency_key or f"py-{uuid.uuid4()}"}
        if traceparent:
            headers["traceparent"] = traceparent
        status, o = self._call("POST", "/v1/sagas", body, headers)
        return Saga.from_json(o, created=status == 201)

    def get(self, saga_id: str) -> Saga:
        """GET /v1/sagas/{id}."""
        return Saga.from_json(self._call("GET", f"/v1/sagas/{urllib.parse.quote(saga_id)}")[1])

    def wait(self, saga_id: str, timeout_s: float = 60.0) -> Saga:
        """The saga once it ended (completed, compensated, failed, resolved
        or rejected: look at .status), by long polls of at most 30 s
        (GET ?wait=). WaitTimeout when timeout_s passed first."""
        deadline = time.monotonic() + timeout_s
        path = f"/v1/sagas/{urllib.parse.quote(saga_id)}"
        while True:
            left = deadline - time.monotonic()
            wait_ms = int(max(0.0, min(left, 30.0)) * 1000)
            t0 = time.monotonic()
            _, o = self._call("GET", f"{path}?wait={wait_ms}ms",
                              timeout_s=wait_ms / 1000 + self.timeout_s)
            saga = Saga.from_json(o)
            if saga.ended:
                return saga
            if time.monotonic() >= deadline:
                raise WaitTimeout(saga, timeout_s)
            if time.monotonic() - t0 < 0.5:  # a server that answered at once
                time.sleep(0.5)

    def find(self, business_key: str, limit: int = 50) -> list[Saga]:
        """GET /v1/sagas?business_key=: the sagas with this business key,
        newest first."""
        q = urllib.parse.urlencode({"business_key": business_key, "limit": limit})
        _, o = self._call("GET", f"/v1/sagas?{q}")
        return [Saga.from_json(s) for s in o.get("sagas", [])]

    def signal(self, saga_id: str, name: str, payload: dict[str, Any] | None = None, *,
               id: str | None = None, failed: bool = False,
               reason: str | None = None) -> Signal:
        """POST /v1/sagas/{id}/signals/{name}: a signal for the saga's wait
        step named `name` (kept until the saga waits for it). `payload`
        becomes the step's output; failed=True (with a reason) fails the
        step and the saga is compensated. The `id` makes a resend harmless
        (absorbed: .duplicate is True); without one the client makes one
        (`py-<uuid>`), so its own retries (a 503, a connection error) never
        deliver the signal twice — give your own to make your caller's
        retries safe too. A saga that is not running refuses it:
        APIError 409 "refused"; no such saga: 404; a bad payload, id,
        verdict or reason: 422."""
        body: dict[str, Any] = {}
        if payload is not None:
            body["payload"] = payload
        body["id"] = id if id is not None else f"py-{uuid.uuid4()}"
        if failed:
            body["verdict"] = "failed"
        if reason is not None:
            body["reason"] = reason
        q = urllib.parse.quote
        _, o = self._call("POST", f"/v1/sagas/{q(saga_id, safe='')}/signals/{q(name, safe='')}",
                          body, retried=frozenset({503}))
        return Signal(saga_id=str(o.get("saga_id", saga_id)), name=str(o.get("name", name)),
                      id=str(o.get("id") or body["id"]), duplicate=bool(o.get("duplicate", False)))
