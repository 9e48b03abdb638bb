"""The wire protocol's messages (docs/PROTOCOL.md): decode commands and
replies with every rule libsaga applies, in libsaga's words, and encode
replies to the bytes libsaga produces. tests/vectors/ holds the cases."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

PROTOCOL_VERSION = 1
# A command to one element of a fan-out step, and its reply: version 1 plus
# "element" (docs/PROTOCOL.md, "Fan-out elements (version 2)").
PROTOCOL_VERSION_ELEMENTS = 2
ELEMENTS_MAX = 100_000  # elements of one step: 0 .. ELEMENTS_MAX - 1
MESSAGE_MAX = 1024 * 1024
ATTEMPT_MAX = 1_000_000
RETRY_AFTER_MAX = 2_592_000_000
DEADLINE_MAX = 253_402_300_799_999
NAME_MAX = 255
COMMAND_ID_MAX = 255
TOPIC_MAX = 249
ERROR_MESSAGE_MAX = 4096
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Phase = Literal["invoke", "compensate"]
Status = Literal["ok", "failed", "retry"]
JSONObject = dict[str, Any]

_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]+")


class ProtocolError(ValueError):
    """A malformed message: `field` is the field at fault (None when the
    message as a whole is), the text says what was wrong."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Command:
    """A command from sagad (docs/PROTOCOL.md, "Command")."""

    saga_id: str
    saga: str
    saga_version: int
    step: int
    step_name: str
    phase: Phase
    action: str
    command_id: str
    attempt: int
    deadline: int  # ms since the epoch; 0: none
    reply_to: str
    payload: JSONObject = field(default_factory=dict)
    traceparent: str | None = None  # the Kafka header, as received
    v: int = PROTOCOL_VERSION  # 2: a command to one element of a fan-out step
    element: int = 0  # with v 2: the element's 0-based index; else 0

    @property
    def is_element(self) -> bool:
        """True for a command to one element of a fan-out step (v 2)."""
        return self.v == PROTOCOL_VERSION_ELEMENTS

    @property
    def deadline_passed(self) -> bool:
        """True when sagad has stopped waiting for this attempt. libsaga
        runs the handler anyway; a handler may skip the work, but must
        still answer (a `retry` is the safe answer: no effect)."""
        return self.deadline > 0 and time.time() * 1000 > self.deadline


@dataclass(frozen=True)
class Reply:
    """A reply to sagad (docs/PROTOCOL.md, "Reply")."""

    saga_id: str
    step: int
    phase: Phase
    command_id: str
    attempt: int
    status: Status
    output: JSONObject | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_after: int = 0
    v: int = PROTOCOL_VERSION  # a reply to an element's command is v 2
    element: int = 0  # with v 2: the command's element


def command_id(saga_id: str, step: int, phase: Phase, element: int = -1) -> str:
    """The de-duplication key of a step and phase, "<saga_id>/<step>/<phase>",
    and of one element of a fan-out step, "<saga_id>/<step>/<phase>/<element>"
    (a negative element: the step's)."""
    if element >= 0:
        return f"{saga_id}/{step}/{phase}/{element}"
    return f"{saga_id}/{step}/{phase}"


def topic_name_valid(s: str) -> bool:
    """A Kafka topic name: 1-249 letters, digits, '.', '_', '-'; not "." or ".."."""
    return (s not in (".", "..") and 0 < len(s) <= TOPIC_MAX
            and _TOPIC.fullmatch(s) is not None and s.isascii())


def cut_utf8(s: str, limit: int) -> str:
    """s cut to at most limit UTF-8 bytes, never inside a character."""
    b = s.encode()
    if len(b) <= limit:
        return s
    return b[:limit].decode(errors="ignore")


# ---- JSON as jansson reads it (JSON_REJECT_DUPLICATES; no NUL, no lone
# surrogates, int64 integers, finite reals, an object or array on top)

def _pairs(pairs: list[tuple[str, Any]]) -> JSONObject:
    out: JSONObject = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate object key \"{k[:40]}\"")
        out[k] = v
    return out


def _int(s: str) -> int:
    n = int(s)
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError("too big integer")
    return n


def _float(s: str) -> float:
    f = float(s)
    if f in (float("inf"), float("-inf")):
        raise ValueError("real number overflow")
    return f


def _constant(s: str) -> Any:
    raise ValueError(f"invalid token {s}")


def _check_text(s: str) -> None:
    if "\x00" in s:
        raise ValueError("\\u0000 is not allowed")
    for ch in s:
        if "\ud800" <= ch <= "\udfff":
            raise ValueError(f"invalid Unicode '\\u{ord(ch):04X}'")


def _walk(v: Any) -> None:
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            _check_text(x)
        elif isinstance(x, dict):
            for k, item in x.items():
                _check_text(k)
                stack.append(item)
        elif isinstance(x, list):
            stack.extend(x)


def parse_json(buf: bytes) -> JSONObject:
    """The message as a JSON object, or ProtocolError (field None)."""
    if len(buf) > MESSAGE_MAX:
        raise ProtocolError(f"message of {len(buf)} bytes exceeds the {MESSAGE_MAX} byte limit")
    try:
        text = buf.decode("utf-8")
        if text.lstrip(" \t\r\n")[:1] not in ("{", "["):
            raise ValueError("'[' or '{' expected")
        root = json.loads(text, object_pairs_hook=_pairs, parse_int=_int,
                          parse_float=_float, parse_constant=_constant)
        _walk(root)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError too
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(root, dict):
        raise ProtocolError("message is not a JSON object")
    return root


# ---- field readers: libsaga's checks and words (sdk/src/saga_protocol.c)

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _get_int(o: JSONObject, key: str, lo: int, hi: int, required: bool) -> int:
    v = o.get(key)
    if v is None:
        if required:
            raise ProtocolError(f'field "{key}" is missing', key)
        return 0
    if not _is_int(v):
        raise ProtocolError(f'field "{key}" must be an integer', key)
    n = cast(int, v)
    if not lo <= n <= hi:
        raise ProtocolError(f'field "{key}" is {n}, out of range [{lo}, {hi}]', key)
    return n


def _get_str(o: JSONObject, key: str, required: bool, limit: int,
             where: str | None = None) -> str | None:
    name = f"{where}.{key}" if where else key
    pre = f'in "{where}": ' if where else ""
    v = o.get(key)
    if v is None:
        if required:
            raise ProtocolError(f'{pre}field "{key}" is missing', name)
        return None
    if not isinstance(v, str):
        raise ProtocolError(f'{pre}field "{key}" must be a string', name)
    n = len(v.encode())
    if required and n == 0:
        raise ProtocolError(f'{pre}field "{key}" must not be empty', name)
    if limit > 0 and n > limit:
        raise ProtocolError(f'{pre}field "{key}" is {n} bytes long, over the limit of {limit}',
                            name)
    return v


def _quote(s: str, n: int) -> str:
    """What C's "%.Ns" prints of s: its first n bytes."""
    return s.encode()[:n].decode(errors="replace")


def _common(o: JSONObject) -> tuple[int, int, str, int, Phase, str, int]:
    v = _get_int(o, "v", 0, 1_000_000, True)
    if v not in (PROTOCOL_VERSION, PROTOCOL_VERSION_ELEMENTS):
        raise ProtocolError(f'field "v" is {v}; this side speaks {PROTOCOL_VERSION} and '
                            f'{PROTOCOL_VERSION_ELEMENTS}', "v")
    # Only a version 2 message has an element; version 1's "element", if
    # any, is not ours to read (as any unknown field).
    element = 0
    if v == PROTOCOL_VERSION_ELEMENTS:
        element = _get_int(o, "element", 0, ELEMENTS_MAX - 1, True)
    saga_id = o.get("saga_id")
    if not isinstance(saga_id, str):
        raise ProtocolError('field "saga_id" must be a string', "saga_id")
    if _UUID.fullmatch(saga_id) is None:
        raise ProtocolError(f'field "saga_id" is not a UUID: "{_quote(saga_id, 40)}"', "saga_id")
    step = _get_int(o, "step", 0, 9999, True)
    phase = o.get("phase")
    if phase not in ("invoke", "compensate"):
        raise ProtocolError('field "phase" must be "invoke" or "compensate"', "phase")
    cid = cast(str, _get_str(o, "command_id", True, COMMAND_ID_MAX))
    attempt = _get_int(o, "attempt", 1, ATTEMPT_MAX, True)
    return v, element, saga_id, step, cast(Phase, phase), cid, attempt


def decode_command(buf: bytes, traceparent: str | None = None) -> Command:
    """A command from its bytes, or ProtocolError naming the field."""
    o = parse_json(buf)
    v, element, saga_id, step, phase, cid, attempt = _common(o)
    saga = cast(str, _get_str(o, "saga", True, NAME_MAX))
    step_name = cast(str, _get_str(o, "step_name", True, NAME_MAX))
    action = cast(str, _get_str(o, "action", True, NAME_MAX))
    reply_to = cast(str, _get_str(o, "reply_to", True, TOPIC_MAX))
    if not topic_name_valid(reply_to):
        raise ProtocolError('field "reply_to" is not a Kafka topic name (letters, digits, '
                            "'.', '_', '-'; not \".\" or \"..\")", "reply_to")
    saga_version = _get_int(o, "saga_version", 1, 1_000_000_000, True)
    deadline = _get_int(o, "deadline", 0, DEADLINE_MAX, False)
    payload = o.get("payload")
    if payload is None:
        payload = {}
    elif not isinstance(payload, dict):
        raise ProtocolError('field "payload" must be an object', "payload")
    return Command(saga_id=saga_id, saga=saga, saga_version=saga_version, step=step,
                   step_name=step_name, phase=phase, action=action, command_id=cid,
                   attempt=attempt, deadline=deadline, reply_to=reply_to, payload=payload,
                   traceparent=traceparent, v=v, element=element)


def decode_reply(buf: bytes) -> Reply:
    """A reply from its bytes, or ProtocolError naming the field."""
    o = parse_json(buf)
    v, element, saga_id, step, phase, cid, attempt = _common(o)
    status = o.get("status")
    if status not in ("ok", "failed", "retry"):
        raise ProtocolError('field "status" must be "ok", "failed" or "retry"', "status")
    output = o.get("output")
    if output is not None and not isinstance(output, dict):
        raise ProtocolError('field "output" must be an object', "output")
    code = message = None
    err = o.get("error")
    if err is not None:
        if not isinstance(err, dict):
            raise ProtocolError('field "error" must be an object', "error")
        code = _get_str(err, "code", False, NAME_MAX, "error")
        message = _get_str(err, "message", False, 0, "error")
    if message is not None:
        message = cut_utf8(message, ERROR_MESSAGE_MAX)
    retry_after = _get_int(o, "retry_after", 0, RETRY_AFTER_MAX, False)
    return Reply(saga_id=saga_id, step=step, phase=phase, command_id=cid, attempt=attempt,
                 status=cast(Status, status), output=output, error_code=code,
                 error_message=message, retry_after=retry_after, v=v, element=element)


# ---- encoding, byte for byte as libsaga (jansson, JSON_COMPACT |
# JSON_ENSURE_ASCII: \uXXXX in upper-case hex)

_ESCAPE = re.compile(r"\\(\\|u[0-9a-f]{4})")


def _upper_escape(m: re.Match[str]) -> str:
    s = m.group(1)
    return m.group(0) if s == "\\" else "\\u" + s[1:].upper()


def dumps(obj: Any) -> str:
    """Compact JSON with non-ASCII escaped as jansson escapes it."""
    return _ESCAPE.sub(_upper_escape, json.dumps(obj, separators=(",", ":"), ensure_ascii=True,
                                                 allow_nan=False))


def reply_object(r: Reply) -> JSONObject:
    """The reply as the JSON object libsaga sends and keeps in its barrier:
    version 2 (a reply to an element's command) has "element" after
    "status"; any other v is sent as 1, without it. ValueError for an
    element out of range, as libsaga's saga_reply_encode refuses it."""
    elements = r.v == PROTOCOL_VERSION_ELEMENTS
    if elements and not 0 <= r.element < ELEMENTS_MAX:
        raise ValueError(f"element {r.element} out of range [0, {ELEMENTS_MAX - 1}]")
    o: JSONObject = {"v": PROTOCOL_VERSION_ELEMENTS if elements else PROTOCOL_VERSION,
                     "saga_id": r.saga_id, "step": r.step, "phase": r.phase,
                     "command_id": r.command_id, "attempt": r.attempt, "status": r.status}
    if elements:
        o["element"] = r.element
    if r.status == "ok":
        o["output"] = r.output if r.output is not None else {}
    else:
        o["error"] = {"code": r.error_code if r.error_code is not None else "error",
                      "message": r.error_message if r.error_message is not None else ""}
        if r.status == "retry" and r.retry_after > 0:
            o["retry_after"] = r.retry_after
    return o


def encode_reply(r: Reply) -> bytes:
    """The reply's bytes, exactly as libsaga's saga_reply_encode makes them."""
    return dumps(reply_object(r)).encode("ascii")


def reply_from_object(o: JSONObject, attempt: int) -> Reply:
    """A reply kept as JSON (a barrier row, written by libsaga or by this
    SDK), answering attempt."""
    err = o.get("error") or {}
    return Reply(saga_id=o["saga_id"], step=o["step"], phase=o["phase"],
                 command_id=o["command_id"], attempt=attempt, status=o["status"],
                 output=o.get("output"), error_code=err.get("code"),
                 error_message=err.get("message"), retry_after=o.get("retry_after") or 0,
                 v=o.get("v") or PROTOCOL_VERSION, element=o.get("element") or 0)
