#!/usr/bin/env python3
"""Writes the shared protocol test vectors (tests/vectors/README.md).

The vectors are data; this script is only how they were written. Edit the
tables below and run it again (`python3 tests/vectors/generate.py`); commit
the JSON files it writes. Every expected result here is what libsaga does:
tests/unit/test_vectors.c checks libsaga's own codec, signer and
librdkafka's partitioner against every file, so a wrong expectation fails
`make check` at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import sys
import zlib
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ID = "0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22"
NOT_JSON = {"field": None, "message_prefix": "not JSON: "}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def command(**changes: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "v": 1,
        "saga_id": ID,
        "saga": "order",
        "saga_version": 1,
        "step": 1,
        "step_name": "reserve_credit",
        "phase": "invoke",
        "action": "reserve_credit",
        "command_id": ID + "/1/invoke",
        "attempt": 1,
        "deadline": 1795535851771,
        "reply_to": "saga.reply.payment",
        "payload": {"customer_id": "alice", "amount": 1500},
    }
    for k, v in changes.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def reply(**changes: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "v": 1,
        "saga_id": ID,
        "step": 1,
        "phase": "invoke",
        "command_id": ID + "/1/invoke",
        "attempt": 1,
        "status": "ok",
        "output": {"reservation_id": ID, "amount": 1500},
    }
    for k, v in changes.items():
        if v is DROP:
            r.pop(k, None)
        else:
            r[k] = v
    return r


DROP = object()


def decoded_command(c: dict[str, Any]) -> dict[str, Any]:
    """What a decoder gives for a valid command: every field, defaults filled
    (element 0 for version 1, whose "element" is an unknown field)."""
    payload = c.get("payload")
    return {
        "v": c["v"],
        "element": c["element"] if c["v"] == 2 else 0,
        "saga_id": c["saga_id"],
        "saga": c["saga"],
        "saga_version": c["saga_version"],
        "step": c["step"],
        "step_name": c["step_name"],
        "phase": c["phase"],
        "action": c["action"],
        "command_id": c["command_id"],
        "attempt": c["attempt"],
        "deadline": c.get("deadline") or 0,
        "reply_to": c["reply_to"],
        "payload": payload if payload is not None else {},
    }


def cut_utf8(s: str, limit: int) -> str:
    b = s.encode()
    if len(b) <= limit:
        return s
    n = limit
    while n > 0 and (b[n] & 0xC0) == 0x80:
        n -= 1
    return b[:n].decode()


def decoded_reply(r: dict[str, Any]) -> dict[str, Any]:
    err = r.get("error") or {}
    msg = err.get("message")
    return {
        "v": r["v"],
        "element": r["element"] if r["v"] == 2 else 0,
        "saga_id": r["saga_id"],
        "step": r["step"],
        "phase": r["phase"],
        "command_id": r["command_id"],
        "attempt": r["attempt"],
        "status": r["status"],
        "output": r.get("output"),
        "error_code": err.get("code"),
        "error_message": cut_utf8(msg, 4096) if msg is not None else None,
        "retry_after": r.get("retry_after") or 0,
    }


vectors: list[dict[str, Any]] = []


def ok_command(name: str, description: str, c: dict[str, Any], text: str | None = None) -> None:
    vectors.append({
        "dir": "commands", "name": name, "kind": "command", "description": description,
        "message": text if text is not None else dumps(c),
        "expect": {"ok": decoded_command(c)},
    })


def bad(kind: str, name: str, description: str, error: dict[str, Any], *,
        obj: dict[str, Any] | None = None, text: str | None = None,
        raw: bytes | None = None, repeat: dict[str, Any] | None = None) -> None:
    v: dict[str, Any] = {"dir": "commands" if kind == "command" else "replies",
                         "name": name, "kind": kind, "description": description}
    if obj is not None:
        v["message"] = dumps(obj)
    elif text is not None:
        v["message"] = text
    elif raw is not None:
        v["message_base64"] = base64.b64encode(raw).decode()
    else:
        v["message_repeat"] = repeat
    v["expect"] = {"error": error}
    vectors.append(v)


def field_err(field: str, message: str) -> dict[str, Any]:
    return {"field": field, "message": message}


# ---- commands that decode
ok_command("ok-invoke", "The invoke example of docs/PROTOCOL.md.", command())
ok_command("ok-compensate", "A compensation: payload holds the action's input and output.",
           command(phase="compensate", action="release_credit",
                   command_id=ID + "/1/compensate", attempt=3,
                   payload={"input": {"customer_id": "alice", "amount": 1500},
                            "output": {"reservation_id": ID, "amount": 1500}}))
ok_command("ok-compensate-unknown-output",
           "A compensation after retries ran out: the action's output is null (unknown).",
           command(phase="compensate", action="release_credit",
                   command_id=ID + "/1/compensate",
                   payload={"input": {"customer_id": "alice", "amount": 1500}, "output": None}))
ok_command("ok-no-deadline", "deadline absent: 0 (none).", command(deadline=DROP))
ok_command("ok-null-deadline", "null counts as absent: deadline 0.", command(deadline=None))
ok_command("ok-no-payload", "payload absent: {}.", command(payload=DROP))
ok_command("ok-null-payload", "payload null: {}.", command(payload=None))
ok_command("ok-legacy-reply-to", "reply_to the shared <prefix>reply of sagad before 0.3 decodes "
           "(the participant then checks it is this deployment's).", command(reply_to="saga.reply"))
ok_command("ok-foreign-reply-to",
           "The codec only checks that reply_to is a topic name; whether it is this "
           "deployment's reply topic is the participant's check (libsaga dead-letters it).",
           command(reply_to="other.reply.payment"))
c = command()
c["future_field"] = {"x": [1, 2, 3]}
ok_command("ok-unknown-fields", "Unknown fields are ignored.", c)
ok_command("ok-upper-case-uuid", "A saga_id in upper-case hex is a UUID too (kept as written).",
           command(saga_id=ID.upper(), command_id=ID.upper() + "/1/invoke"))
ok_command("ok-maximums", "Every bounded field at its maximum.",
           command(step=9999, attempt=1000000, saga_version=1000000000,
                   deadline=253402300799999, saga="s" * 255, step_name="n" * 255,
                   action="a" * 255, command_id="c" * 255, reply_to="r" * 249))
ok_command("ok-minimums", "Every bounded field at its minimum.",
           command(step=0, attempt=1, saga_version=1, deadline=0, saga="s", step_name="n",
                   action="a", command_id="c", reply_to="r"))
ok_command("ok-command-id-mismatch",
           "A command_id other than <saga_id>/<step>/<phase> is not malformed: libsaga "
           "decodes it; the barrier keys on (saga_id, step, phase) and sagad applies a "
           "reply only with the command_id it sent.",
           command(command_id="something-else"))
ok_command("ok-unicode", "Non-ASCII text in names and payload (UTF-8, and escaped).",
           command(step_name="réserver", payload={"note": "grüße 😀", "esc": "é"}),
           text=dumps(command(step_name="réserver", payload={"note": "grüße 😀", "esc": "x"}))
           .replace('"esc":"x"', '"esc":"\\u00e9"'))
ok_command("ok-whitespace", "Whitespace between tokens is fine.", command(),
           text=json.dumps(command(), indent=2))
deep: Any = {"leaf": True}
for _ in range(200):
    deep = {"d": deep}
ok_command("ok-deep-payload", "A payload nested 200 deep.", command(payload=deep))
ok_command("ok-payload-numbers", "Integers at int64's ends and reals in the payload.",
           command(payload={"max": 9223372036854775807, "min": -9223372036854775808,
                            "real": 1.5, "neg": -0.25, "zero": 0}))

# ---- commands that do not
bad("command", "bad-empty", "No bytes at all.", NOT_JSON, text="")
bad("command", "bad-not-json", "Not JSON.", NOT_JSON, text="{\"v\":1,")
bad("command", "bad-trailing", "Data after the object.", NOT_JSON, text=dumps(command()) + " x")
bad("command", "bad-array", "A JSON array, not an object.",
    {"field": None, "message": "message is not a JSON object"}, text="[1,2]")
bad("command", "bad-scalar", "A JSON string at the top level.", NOT_JSON, text="\"hello\"")
bad("command", "bad-duplicate-key", "A key twice at the top level.", NOT_JSON,
    text=dumps(command())[:-1] + ",\"step\":2}")
bad("command", "bad-duplicate-key-nested", "A key twice inside the payload.", NOT_JSON,
    text=dumps(command(payload={"a": 1})).replace('{"a":1}', '{"a":1,"a":2}'))
bad("command", "bad-nul-escape", "\\u0000 in a string (C strings cannot hold it).", NOT_JSON,
    text=dumps(command(payload={"a": "x"})).replace('"x"', '"x\\u0000y"'))
bad("command", "bad-lone-surrogate", "An escaped lone UTF-16 surrogate is not Unicode.", NOT_JSON,
    text=dumps(command(payload={"a": "x"})).replace('"x"', '"\\ud800"'))
bad("command", "bad-invalid-utf8", "Bytes that are not UTF-8 in a string.", NOT_JSON,
    raw=dumps(command(payload={"a": "x"})).replace('"x"', '"\x01X\x01"').encode()
    .replace(b"\x01X\x01", b"\xff\xfe"))
bad("command", "bad-bom", "A UTF-8 byte order mark before the object.", NOT_JSON,
    raw=b"\xef\xbb\xbf" + dumps(command()).encode())
bad("command", "bad-int-too-big", "An integer beyond int64 (in the payload).", NOT_JSON,
    text=dumps(command(payload={"a": 1})).replace('"a":1', '"a":9223372036854775808'))
bad("command", "bad-real-overflow", "A real beyond double (in the payload).", NOT_JSON,
    text=dumps(command(payload={"a": 1})).replace('"a":1', '"a":1e400'))
bad("command", "bad-nan", "NaN is not JSON.", NOT_JSON,
    text=dumps(command(payload={"a": 1})).replace('"a":1', '"a":NaN'))
bad("command", "bad-too-large", "1,048,577 bytes: over the 1 MiB limit, refused unparsed.",
    {"field": None, "message": "message of 1048577 bytes exceeds the 1048576 byte limit"},
    repeat={"prefix": "{\"pad\":\"", "fill": "x", "count": 1048577 - 10, "suffix": "\"}"})
bad("command", "bad-v-missing", "v absent.", field_err("v", 'field "v" is missing'),
    obj=command(v=DROP))
bad("command", "bad-v-null", "v null (counts as absent).", field_err("v", 'field "v" is missing'),
    obj=command(v=None))
bad("command", "bad-v-3", "A protocol version this side does not speak (1 and 2 it does).",
    field_err("v", 'field "v" is 3; this side speaks 1 and 2'), obj=command(v=3))
bad("command", "bad-v-0", "v 0.",
    field_err("v", 'field "v" is 0; this side speaks 1 and 2'), obj=command(v=0))
bad("command", "bad-v-string", "v as a string.",
    field_err("v", 'field "v" must be an integer'), obj=command(v="1"))
bad("command", "bad-v-real", "v as a real: 1.0 is not an integer.",
    field_err("v", 'field "v" must be an integer'), text=dumps(command()).replace('"v":1', '"v":1.0'))
bad("command", "bad-v-bool", "v as true.", field_err("v", 'field "v" must be an integer'),
    obj=command(v=True))
bad("command", "bad-saga-id-missing", "saga_id absent.",
    field_err("saga_id", 'field "saga_id" must be a string'), obj=command(saga_id=DROP))
bad("command", "bad-saga-id-not-uuid", "saga_id not a UUID.",
    field_err("saga_id", 'field "saga_id" is not a UUID: "order-1001"'),
    obj=command(saga_id="order-1001"))
bad("command", "bad-saga-id-braces", "saga_id with braces (37+ characters).",
    field_err("saga_id", 'field "saga_id" is not a UUID: "{' + ID + '}"'),
    obj=command(saga_id="{" + ID + "}"))
bad("command", "bad-saga-id-no-dashes", "saga_id of 36 characters without its dashes in place.",
    field_err("saga_id", 'field "saga_id" is not a UUID: "0b5c3d9e06a43-4f7e-9a51-2f8d0c1e7b22"'),
    obj=command(saga_id="0b5c3d9e06a43-4f7e-9a51-2f8d0c1e7b22"))
bad("command", "bad-step-negative", "step -1.",
    field_err("step", 'field "step" is -1, out of range [0, 9999]'), obj=command(step=-1))
bad("command", "bad-step-10000", "step 10000.",
    field_err("step", 'field "step" is 10000, out of range [0, 9999]'), obj=command(step=10000))
bad("command", "bad-step-string", "step as a string.",
    field_err("step", 'field "step" must be an integer'), obj=command(step="1"))
bad("command", "bad-phase", "phase in the wrong case.",
    field_err("phase", 'field "phase" must be "invoke" or "compensate"'), obj=command(phase="Invoke"))
bad("command", "bad-phase-missing", "phase absent.",
    field_err("phase", 'field "phase" must be "invoke" or "compensate"'), obj=command(phase=DROP))
bad("command", "bad-command-id-missing", "command_id absent.",
    field_err("command_id", 'field "command_id" is missing'), obj=command(command_id=DROP))
bad("command", "bad-command-id-empty", "command_id empty.",
    field_err("command_id", 'field "command_id" must not be empty'), obj=command(command_id=""))
bad("command", "bad-command-id-long", "command_id of 256 bytes.",
    field_err("command_id", 'field "command_id" is 256 bytes long, over the limit of 255'),
    obj=command(command_id="c" * 256))
bad("command", "bad-command-id-number", "command_id as a number.",
    field_err("command_id", 'field "command_id" must be a string'), obj=command(command_id=7))
bad("command", "bad-attempt-0", "attempt 0.",
    field_err("attempt", 'field "attempt" is 0, out of range [1, 1000000]'), obj=command(attempt=0))
bad("command", "bad-attempt-too-big", "attempt 1,000,001.",
    field_err("attempt", 'field "attempt" is 1000001, out of range [1, 1000000]'),
    obj=command(attempt=1000001))
bad("command", "bad-saga-missing", "saga absent.",
    field_err("saga", 'field "saga" is missing'), obj=command(saga=DROP))
bad("command", "bad-saga-empty", "saga empty.",
    field_err("saga", 'field "saga" must not be empty'), obj=command(saga=""))
bad("command", "bad-saga-long-bytes", "saga of 128 characters but 256 bytes: limits count bytes.",
    field_err("saga", 'field "saga" is 256 bytes long, over the limit of 255'),
    obj=command(saga="é" * 128))
bad("command", "bad-step-name-missing", "step_name absent.",
    field_err("step_name", 'field "step_name" is missing'), obj=command(step_name=DROP))
bad("command", "bad-action-missing", "action absent.",
    field_err("action", 'field "action" is missing'), obj=command(action=DROP))
bad("command", "bad-action-long", "action of 256 bytes.",
    field_err("action", 'field "action" is 256 bytes long, over the limit of 255'),
    obj=command(action="a" * 256))
bad("command", "bad-reply-to-missing", "reply_to absent.",
    field_err("reply_to", 'field "reply_to" is missing'), obj=command(reply_to=DROP))
bad("command", "bad-reply-to-chars", "reply_to with characters a topic cannot have.",
    field_err("reply_to", 'field "reply_to" is not a Kafka topic name (letters, digits, '
              "'.', '_', '-'; not \".\" or \"..\")"), obj=command(reply_to="bad topic!"))
bad("command", "bad-reply-to-dot", "reply_to \".\".",
    field_err("reply_to", 'field "reply_to" is not a Kafka topic name (letters, digits, '
              "'.', '_', '-'; not \".\" or \"..\")"), obj=command(reply_to="."))
bad("command", "bad-reply-to-long", "reply_to of 250 bytes.",
    field_err("reply_to", 'field "reply_to" is 250 bytes long, over the limit of 249'),
    obj=command(reply_to="r" * 250))
bad("command", "bad-saga-version-0", "saga_version 0.",
    field_err("saga_version", 'field "saga_version" is 0, out of range [1, 1000000000]'),
    obj=command(saga_version=0))
bad("command", "bad-saga-version-missing", "saga_version absent.",
    field_err("saga_version", 'field "saga_version" is missing'), obj=command(saga_version=DROP))
bad("command", "bad-deadline-negative", "deadline -1.",
    field_err("deadline", 'field "deadline" is -1, out of range [0, 253402300799999]'),
    obj=command(deadline=-1))
bad("command", "bad-deadline-too-far", "deadline after 9999-12-31.",
    field_err("deadline", 'field "deadline" is 253402300800000, out of range [0, 253402300799999]'),
    obj=command(deadline=253402300800000))
bad("command", "bad-deadline-string", "deadline as a string.",
    field_err("deadline", 'field "deadline" must be an integer'), obj=command(deadline="soon"))
bad("command", "bad-payload-array", "payload an array.",
    field_err("payload", 'field "payload" must be an object'), obj=command(payload=[1]))
bad("command", "bad-payload-string", "payload a string.",
    field_err("payload", 'field "payload" must be an object'), obj=command(payload="{}"))


# ---- version 2: a command to one element of a fan-out step
# (docs/PROTOCOL.md, "Fan-out elements (version 2)"): "element" is required,
# 0..99999; its command_id is <saga_id>/<step>/<phase>/<element>.
def element_index(element: Any) -> int:
    """The element a command id names (1 when element is not an index)."""
    return element if isinstance(element, int) and not isinstance(element, bool) else 1


def element_command(element: Any, **changes: Any) -> dict[str, Any]:
    c = command(v=2, command_id=f"{ID}/1/invoke/{element_index(element)}", **changes)
    c["element"] = element
    return c


ok_command("ok-element", "Element 3 of a fan-out step: v 2, its element and command id.",
           element_command(3))
ok_command("ok-element-0", "Element 0.", element_command(0))
ok_command("ok-element-max", "The last element there can be (SAGA_ELEMENTS_MAX - 1).",
           element_command(99999))
c = element_command(2, phase="compensate", action="release_credit",
                    payload={"input": {"customer_id": "alice", "amount": 1500},
                             "output": {"reservation_id": ID, "amount": 1500}})
c["command_id"] = ID + "/1/compensate/2"
ok_command("ok-element-compensate", "The compensation of element 2.", c)
c = command()
c["element"] = 5
ok_command("ok-v1-element-ignored",
           "v 1 with an \"element\": an unknown field there, ignored (element 0).", c)
c = command()
c["element"] = "x"
ok_command("ok-v1-element-not-integer-ignored",
           "v 1 with an \"element\" that is no integer: not read, so not malformed.", c)
c = element_command(0)
del c["element"]
bad("command", "bad-element-missing",
    "v 2 without element: refused (an older reader would take it for element 0's "
    "duplicate; this one must not guess).",
    field_err("element", 'field "element" is missing'), obj=c)
bad("command", "bad-element-null", "v 2, element null (counts as absent).",
    field_err("element", 'field "element" is missing'), obj=element_command(None))
bad("command", "bad-element-negative", "element -1.",
    field_err("element", 'field "element" is -1, out of range [0, 99999]'),
    obj=element_command(-1))
bad("command", "bad-element-100000", "element 100,000: one past SAGA_ELEMENTS_MAX - 1.",
    field_err("element", 'field "element" is 100000, out of range [0, 99999]'),
    obj=element_command(100000))
bad("command", "bad-element-string", "element as a string.",
    field_err("element", 'field "element" must be an integer'), obj=element_command("1"))
bad("command", "bad-element-real", "element as a real: 1.0 is not an integer.",
    field_err("element", 'field "element" must be an integer'),
    text=dumps(element_command(1)).replace('"element":1', '"element":1.0'))
bad("command", "bad-element-bool", "element as true.",
    field_err("element", 'field "element" must be an integer'), obj=element_command(True))
bad("command", "bad-element-before-saga-id",
    "Checked in order: v, then element, then saga_id (both wrong: element is named).",
    field_err("element", 'field "element" is 100000, out of range [0, 99999]'),
    obj=element_command(100000, saga_id="x"))


# ---- replies that decode
def ok_reply(name: str, description: str, r: dict[str, Any], text: str | None = None) -> None:
    vectors.append({
        "dir": "replies", "name": name, "kind": "reply", "description": description,
        "message": text if text is not None else dumps(r),
        "expect": {"ok": decoded_reply(r)},
    })


ok_reply("ok-ok", "An ok reply with its output.", reply())
ok_reply("ok-ok-no-output", "ok without output: output null.", reply(output=DROP))
ok_reply("ok-failed", "A definite failure.",
         reply(status="failed", output=DROP,
               error={"code": "insufficient_credit",
                      "message": "customer bob has 500 of 500 credit available, 1000 needed"}))
ok_reply("ok-retry", "retry with retry_after.",
         reply(status="retry", output=DROP, attempt=2,
               error={"code": "retry", "message": "database busy"}, retry_after=2000))
ok_reply("ok-retry-after-max", "retry_after at its maximum (30 days).",
         reply(status="retry", output=DROP, error={"code": "retry", "message": ""},
               retry_after=2592000000))
ok_reply("ok-null-compensation", "What libsaga answers for a compensation whose action never ran.",
         reply(phase="compensate", command_id=ID + "/1/compensate",
               output={"null_compensation": True}))
ok_reply("ok-hanging-action", "What libsaga answers for an action that came after its compensation.",
         reply(status="failed", output=DROP,
               error={"code": "hanging_action",
                      "message": "step 1 of saga " + ID + " was already compensated; action refused"}))
ok_reply("ok-error-no-code", "An error object without code: code null.",
         reply(status="failed", output=DROP, error={"message": "no code"}))
ok_reply("ok-error-empty-code", "error.code may be empty.",
         reply(status="failed", output=DROP, error={"code": "", "message": "empty code"}))
ok_reply("ok-error-message-cut",
         "An error message over 4,096 bytes is cut to 4,096 at a character boundary "
         "(here 4,095: the last é would straddle it).",
         reply(status="failed", output=DROP,
               error={"code": "long", "message": "x" + "é" * 2100}))
ok_reply("ok-status-mismatch", "The codec does not check that output and error suit the status.",
         reply(status="ok", error={"code": "c", "message": "m"}))
r = reply()
r["extra"] = 1
ok_reply("ok-unknown-fields", "Unknown fields are ignored.", r)
ok_reply("ok-null-optional", "null output, error and retry_after count as absent.",
         reply(output=None, error=None, retry_after=None))


def element_reply(element: Any, **changes: Any) -> dict[str, Any]:
    r = reply(v=2, command_id=f"{ID}/1/invoke/{element_index(element)}", **changes)
    r["element"] = element
    return r


ok_reply("ok-element", "The reply to element 4's command: v 2 and the same element.",
         element_reply(4))
ok_reply("ok-element-hanging-action",
         "What libsaga answers for element 4's action after element 4's compensation.",
         element_reply(4, status="failed", output=DROP,
                       error={"code": "hanging_action",
                              "message": "step 1 element 4 of saga " + ID
                              + " was already compensated; action refused"}))
r = reply()
r["element"] = 9
ok_reply("ok-v1-element-ignored", "v 1 with an \"element\": ignored (element 0).", r)

# ---- replies that do not decode
bad("reply", "bad-status", "status in the wrong case.",
    field_err("status", 'field "status" must be "ok", "failed" or "retry"'), obj=reply(status="OK"))
bad("reply", "bad-status-missing", "status absent.",
    field_err("status", 'field "status" must be "ok", "failed" or "retry"'), obj=reply(status=DROP))
bad("reply", "bad-output-array", "output an array.",
    field_err("output", 'field "output" must be an object'), obj=reply(output=[]))
bad("reply", "bad-error-string", "error a string.",
    field_err("error", 'field "error" must be an object'),
    obj=reply(status="failed", output=DROP, error="boom"))
bad("reply", "bad-error-code-number", "error.code a number.",
    field_err("error.code", 'in "error": field "code" must be a string'),
    obj=reply(status="failed", output=DROP, error={"code": 5, "message": "m"}))
bad("reply", "bad-error-code-long", "error.code of 256 bytes.",
    field_err("error.code", 'in "error": field "code" is 256 bytes long, over the limit of 255'),
    obj=reply(status="failed", output=DROP, error={"code": "c" * 256, "message": "m"}))
bad("reply", "bad-error-message-number", "error.message a number.",
    field_err("error.message", 'in "error": field "message" must be a string'),
    obj=reply(status="failed", output=DROP, error={"code": "c", "message": 1}))
bad("reply", "bad-retry-after-negative", "retry_after -1.",
    field_err("retry_after", 'field "retry_after" is -1, out of range [0, 2592000000]'),
    obj=reply(status="retry", output=DROP, error={"code": "retry", "message": ""}, retry_after=-1))
bad("reply", "bad-retry-after-huge", "retry_after 10^16 (PostgreSQL once refused a whole batch).",
    field_err("retry_after",
              'field "retry_after" is 10000000000000000, out of range [0, 2592000000]'),
    obj=reply(status="retry", output=DROP, error={"code": "retry", "message": ""},
              retry_after=10**16))
bad("reply", "bad-attempt-0", "attempt 0.",
    field_err("attempt", 'field "attempt" is 0, out of range [1, 1000000]'), obj=reply(attempt=0))
bad("reply", "bad-saga-id", "saga_id not a UUID.",
    field_err("saga_id", 'field "saga_id" is not a UUID: "x"'), obj=reply(saga_id="x"))
bad("reply", "bad-not-json", "Not JSON.", NOT_JSON, text="ok")
r = element_reply(0)
del r["element"]
bad("reply", "bad-element-missing", "v 2 without element.",
    field_err("element", 'field "element" is missing'), obj=r)
bad("reply", "bad-element-100000", "element 100,000.",
    field_err("element", 'field "element" is 100000, out of range [0, 99999]'),
    obj=element_reply(100000))
bad("reply", "bad-element-string", "element as a string.",
    field_err("element", 'field "element" must be an integer'), obj=element_reply("4"))
bad("reply", "bad-v-0", "v 0.", field_err("v", 'field "v" is 0; this side speaks 1 and 2'),
    obj=reply(v=0))
bad("reply", "bad-v-3", "v 3.", field_err("v", 'field "v" is 3; this side speaks 1 and 2'),
    obj=reply(v=3))


# ---- replies as libsaga encodes them (saga_reply_encode; a participant's
# replies are the same bytes): JSON_COMPACT | JSON_ENSURE_ASCII, fields in
# this order, non-ASCII as \uXXXX with upper-case hex (surrogate pairs
# beyond the BMP).
def encode(name: str, description: str, fields: dict[str, Any], text: str) -> None:
    vectors.append({"dir": "encode", "name": name, "kind": "reply_encode",
                    "description": description, "reply": fields, "expect": {"json": text}})


base = {"v": 1, "element": 0, "saga_id": ID, "step": 1, "phase": "invoke",
        "command_id": ID + "/1/invoke", "attempt": 2}
head = ('{"v":1,"saga_id":"%s","step":1,"phase":"invoke","command_id":"%s/1/invoke","attempt":2,'
        % (ID, ID))
encode("ok", "ok with an output.", {**base, "status": "ok", "output": {"amount": 1500, "id": "r1"},
                                    "error_code": None, "error_message": None, "retry_after": 0},
       head + '"status":"ok","output":{"amount":1500,"id":"r1"}}')
encode("ok-no-output", "ok without output: {}.",
       {**base, "status": "ok", "output": None, "error_code": None, "error_message": None,
        "retry_after": 0}, head + '"status":"ok","output":{}}')
encode("failed", "failed: the error object, no output.",
       {**base, "status": "failed", "output": None, "error_code": "insufficient_credit",
        "error_message": "bob has 500", "retry_after": 0},
       head + '"status":"failed","error":{"code":"insufficient_credit","message":"bob has 500"}}')
encode("failed-no-code", "failed without a code: code \"error\", message \"\".",
       {**base, "status": "failed", "output": None, "error_code": None, "error_message": None,
        "retry_after": 0}, head + '"status":"failed","error":{"code":"error","message":""}}')
encode("retry", "retry with retry_after.",
       {**base, "status": "retry", "output": None, "error_code": "retry",
        "error_message": "database busy", "retry_after": 2000},
       head + '"status":"retry","error":{"code":"retry","message":"database busy"},"retry_after":2000}')
encode("retry-after-0", "retry_after 0 is left out.",
       {**base, "status": "retry", "output": None, "error_code": "retry", "error_message": "x",
        "retry_after": 0}, head + '"status":"retry","error":{"code":"retry","message":"x"}}')
encode("failed-retry-after-ignored", "retry_after only goes with retry.",
       {**base, "status": "failed", "output": None, "error_code": "c", "error_message": "m",
        "retry_after": 500}, head + '"status":"failed","error":{"code":"c","message":"m"}}')
encode("non-ascii", "Non-ASCII as \\u escapes, upper-case hex; a character beyond the BMP as a "
       "surrogate pair; control characters escaped; '/' not escaped.",
       {**base, "status": "failed", "output": None, "error_code": "c",
        "error_message": "café 😀 a/b \"q\" \\ \t\u0001", "retry_after": 0},
       head + '"status":"failed","error":{"code":"c","message":'
       '"caf\\u00E9 \\uD83D\\uDE00 a/b \\"q\\" \\\\ \\t\\u0001"}}')
encode("compensate", "A null compensation's reply.",
       {**base, "phase": "compensate", "command_id": ID + "/1/compensate", "status": "ok",
        "output": {"null_compensation": True}, "error_code": None, "error_message": None,
        "retry_after": 0},
       head.replace("/1/invoke", "/1/compensate").replace('"invoke"', '"compensate"')
       + '"status":"ok","output":{"null_compensation":true}}')
# Version 2 (an element's reply): "element" comes right after "status", as
# saga_reply_encode adds it.
ebase = {**base, "v": 2, "element": 4, "command_id": ID + "/1/invoke/4"}
ehead = head.replace('"v":1', '"v":2').replace("/1/invoke", "/1/invoke/4")
encode("element-ok", "An element's ok: v 2, element after status.",
       {**ebase, "status": "ok", "output": {"id": "r1"}, "error_code": None,
        "error_message": None, "retry_after": 0},
       ehead + '"status":"ok","element":4,"output":{"id":"r1"}}')
encode("element-failed", "An element's failure.",
       {**ebase, "status": "failed", "output": None, "error_code": "hanging_action",
        "error_message": "refused", "retry_after": 0},
       ehead + '"status":"failed","element":4,"error":{"code":"hanging_action",'
       '"message":"refused"}}')
encode("element-retry", "An element's retry, retry_after last.",
       {**ebase, "element": 0, "command_id": ID + "/1/invoke/0", "status": "retry",
        "output": None, "error_code": "retry", "error_message": "busy", "retry_after": 250},
       ehead.replace("/1/invoke/4", "/1/invoke/0")
       + '"status":"retry","element":0,"error":{"code":"retry","message":"busy"},'
       '"retry_after":250}')
encode("element-compensate", "Element 99,999's null compensation.",
       {**ebase, "element": 99999, "phase": "compensate", "command_id": ID + "/1/compensate/99999",
        "status": "ok", "output": {"null_compensation": True}, "error_code": None,
        "error_message": None, "retry_after": 0},
       ehead.replace("/1/invoke/4", "/1/compensate/99999").replace('"invoke"', '"compensate"')
       + '"status":"ok","element":99999,"output":{"null_compensation":true}}')
encode("v1-element-not-sent", "Version 1 sends no element, whatever the field holds.",
       {**base, "element": 7, "status": "ok", "output": None, "error_code": None,
        "error_message": None, "retry_after": 0}, head + '"status":"ok","output":{}}')


# ---- signatures (docs/PROTOCOL.md, "Signed messages")
K1 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
K2 = "abababababababababababababababababababababababababababababababab"
K3 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"


def sign(key_hex: str, topic: str, msg_key: bytes, value: bytes) -> str:
    def field(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b
    mac = hmac.new(bytes.fromhex(key_hex), field(b"saga.v1") + field(topic.encode())
                   + field(msg_key) + field(value), hashlib.sha256)
    return "v1=" + mac.hexdigest()


CMD_VALUE = dumps(command())
REPLY_VALUE = dumps(reply())


def signed(name: str, description: str, keys: list[str], topic: str, value: str,
           signature: str | None, valid: bool, msg_key: str = ID) -> None:
    vectors.append({"dir": "signatures", "name": name, "kind": "signature",
                    "description": description, "keys_hex": keys, "topic": topic,
                    "message_key": msg_key, "value": value, "signature": signature,
                    "expect": {"valid": valid}})


signed("command", "A command signed with the service's key.", [K1], "saga.cmd.payment",
       CMD_VALUE, sign(K1, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode()), True)
signed("reply", "A reply signed with the service's key.", [K1], "saga.reply.payment",
       REPLY_VALUE, sign(K1, "saga.reply.payment", ID.encode(), REPLY_VALUE.encode()), True)
signed("upper-case-hex", "The signature's hex digits in upper case verify too.", [K1],
       "saga.reply.payment", REPLY_VALUE,
       "v1=" + sign(K1, "saga.reply.payment", ID.encode(), REPLY_VALUE.encode())[3:].upper(), True)
signed("rotated-second-key", "Made by the file's second key: verifies (rotation).", [K2, K1],
       "saga.cmd.payment", CMD_VALUE, sign(K1, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode()),
       True)
signed("empty-key-and-value", "No message key, empty value.", [K2], "saga.reply.payment", "",
       sign(K2, "saga.reply.payment", b"", b""), True, msg_key="")
signed("other-topic", "Signed for saga.reply.payment, read on saga.reply.inventory.", [K1],
       "saga.reply.inventory", REPLY_VALUE,
       sign(K1, "saga.reply.payment", ID.encode(), REPLY_VALUE.encode()), False)
signed("other-key", "Made by a key the service does not have.", [K1], "saga.cmd.payment",
       CMD_VALUE, sign(K3, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode()), False)
signed("tampered-value", "The value changed after signing (attempt 1 -> 2).", [K1],
       "saga.cmd.payment", CMD_VALUE.replace('"attempt":1', '"attempt":2'),
       sign(K1, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode()), False)
signed("other-message-key", "The message key changed after signing.", [K1], "saga.cmd.payment",
       CMD_VALUE, sign(K1, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode()), False,
       msg_key=ID.replace("0b5c", "1b5c"))
signed("missing", "No saga-signature header (null).", [K1], "saga.cmd.payment", CMD_VALUE,
       None, False)
signed("wrong-version", "v2= is not a signature this version knows.", [K1], "saga.cmd.payment",
       CMD_VALUE, "v2=" + sign(K1, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode())[3:], False)
signed("short", "63 hex digits.", [K1], "saga.cmd.payment", CMD_VALUE,
       sign(K1, "saga.cmd.payment", ID.encode(), CMD_VALUE.encode())[:-1], False)
signed("not-hex", "64 characters that are not all hex.", [K1], "saga.cmd.payment", CMD_VALUE,
       "v1=" + "g" * 64, False)
signed("empty", "An empty header.", [K1], "saga.cmd.payment", CMD_VALUE, "", False)


# ---- partitions: librdkafka's default partitioner (consistent_random):
# a non-empty key goes to crc32(key) % partitions, CRC-32 as zlib's
# (IEEE 802.3, reflected, init and final xor 0xffffffff), unsigned.
COUNTS = [1, 2, 3, 4, 6, 8, 12, 16, 32, 100]
KEYS = [ID, ID.upper(), "5f0c2a8e-4d1b-4f6a-9c3e-2b7d8e9f0a1b",
        "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "order-1001", "a", "é"]
seed = hashlib.sha256(b"saga partition vectors").digest()
for i in range(24):
    h = hashlib.sha256(seed + bytes([i])).hexdigest()
    KEYS.append(f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}")
partitions = {
    "kind": "partitions",
    "description": "The partition librdkafka's default partitioner (consistent_random) gives "
                   "each message key for each partition count: crc32(key bytes) % count, "
                   "CRC-32 as zlib.crc32 computes it, unsigned. Every producer of replies "
                   "must agree (franz-go's and the Java client's default, murmur2, do not).",
    "partitioner": "consistent_random",
    "vectors": [{"key": k, "crc32": zlib.crc32(k.encode()),
                 "partitions": {str(n): zlib.crc32(k.encode()) % n for n in COUNTS}}
                for k in KEYS],
}


def main() -> None:
    for d in ("commands", "replies", "encode", "signatures"):
        shutil.rmtree(os.path.join(HERE, d), ignore_errors=True)
        os.makedirs(os.path.join(HERE, d))
    names: set[str] = set()
    for v in vectors:
        d = v.pop("dir")
        path = os.path.join(HERE, d, v["name"] + ".json")
        if path in names:
            sys.exit(f"two vectors named {d}/{v['name']}")
        names.add(path)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(v, f, ensure_ascii=False, indent=2)
            f.write("\n")
    with open(os.path.join(HERE, "partitions.json"), "w", encoding="utf-8") as f:
        json.dump(partitions, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"{len(vectors)} vectors and {len(KEYS)} partition keys written to {HERE}")


if __name__ == "__main__":
    main()
