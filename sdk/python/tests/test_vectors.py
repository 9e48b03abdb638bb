"""The shared protocol vectors (tests/vectors/README.md) through this SDK's
codec, signer and partitioner: the same files libsaga's
tests/unit/test_vectors.c runs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import VECTORS
from saga_sdk.partition import partition_for
from saga_sdk.protocol import ProtocolError, Reply, decode_command, decode_reply, encode_reply
from saga_sdk.sign import Keys, SignatureError


def load(sub: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((VECTORS / sub).glob("*.json"))
    assert files, f"no vectors in {VECTORS / sub}"
    return [(f.name, json.loads(f.read_text(encoding="utf-8"))) for f in files]


def message(v: dict[str, Any]) -> bytes:
    if "message" in v:
        return str(v["message"]).encode()
    if "message_base64" in v:
        return base64.b64decode(str(v["message_base64"]))
    r = v["message_repeat"]
    return str(r["prefix"] + r["fill"] * r["count"] + r["suffix"]).encode()


def check_error(name: str, want: dict[str, Any], e: ProtocolError) -> None:
    assert e.field == want["field"], f"{name}: field {e.field!r}, want {want['field']!r}"
    if "message" in want:
        assert str(e) == want["message"], name
    else:
        assert str(e).startswith(want["message_prefix"]), f"{name}: {e}"


def command_dict(buf: bytes) -> dict[str, Any]:
    c = decode_command(buf)
    return {k: getattr(c, k) for k in ("v", "element", "saga_id", "saga", "saga_version", "step",
                                       "step_name", "phase", "action", "command_id", "attempt",
                                       "deadline", "reply_to", "payload")}


def reply_dict(buf: bytes) -> dict[str, Any]:
    r = decode_reply(buf)
    return {k: getattr(r, k) for k in ("v", "element", "saga_id", "step", "phase", "command_id",
                                       "attempt", "status", "output", "error_code",
                                       "error_message", "retry_after")}


@pytest.mark.parametrize("name,v", load("commands"), ids=lambda x: x if isinstance(x, str) else "")
def test_command(name: str, v: dict[str, Any]) -> None:
    assert v["kind"] == "command"
    if "ok" in v["expect"]:
        assert command_dict(message(v)) == v["expect"]["ok"]
    else:
        with pytest.raises(ProtocolError) as e:
            decode_command(message(v))
        check_error(name, v["expect"]["error"], e.value)


@pytest.mark.parametrize("name,v", load("replies"), ids=lambda x: x if isinstance(x, str) else "")
def test_reply(name: str, v: dict[str, Any]) -> None:
    assert v["kind"] == "reply"
    if "ok" in v["expect"]:
        assert reply_dict(message(v)) == v["expect"]["ok"]
    else:
        with pytest.raises(ProtocolError) as e:
            decode_reply(message(v))
        check_error(name, v["expect"]["error"], e.value)


@pytest.mark.parametrize("name,v", load("encode"), ids=lambda x: x if isinstance(x, str) else "")
def test_encode(name: str, v: dict[str, Any]) -> None:
    f = v["reply"]
    r = Reply(saga_id=f["saga_id"], step=f["step"], phase=f["phase"],
              command_id=f["command_id"], attempt=f["attempt"], status=f["status"],
              output=f["output"], error_code=f["error_code"],
              error_message=f["error_message"], retry_after=f["retry_after"],
              v=f.get("v", 1), element=f.get("element", 0))
    text = encode_reply(r)
    assert text == v["expect"]["json"].encode(), name
    back = decode_reply(text)  # and it decodes back, to its version and element
    assert (back.v, back.element) == (r.v, r.element if r.v == 2 else 0), name


@pytest.mark.parametrize("name,v", load("signatures"),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_signature(name: str, v: dict[str, Any]) -> None:
    keys = Keys.from_hex(v["keys_hex"])
    args = (v["topic"], v["message_key"].encode(), v["value"].encode())
    if v["expect"]["valid"]:
        keys.verify(*args, v["signature"])
        if len(v["keys_hex"]) == 1:
            assert keys.sign(*args) == v["signature"].lower()
    else:
        with pytest.raises(SignatureError):
            keys.verify(*args, v["signature"])


def test_partitions() -> None:
    doc = json.loads((VECTORS / "partitions.json").read_text(encoding="utf-8"))
    assert doc["partitioner"] == "consistent_random"
    n = 0
    for v in doc["vectors"]:
        for count, want in v["partitions"].items():
            assert partition_for(v["key"].encode(), int(count)) == want, (v["key"], count)
            n += 1
    assert n >= 100


def test_every_vector_file_is_run() -> None:
    kinds = {p.parent.name for p in Path(VECTORS).glob("*/*.json")}
    assert kinds == {"commands", "replies", "encode", "signatures"}
