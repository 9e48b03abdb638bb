"""Signed messages (docs/PROTOCOL.md, "Signed messages"): HMAC-SHA256 over
the label, topic, message key and value, each with its length; keys read
from a key file as libsaga reads them (sdk/src/saga_sign.c)."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from collections.abc import Sequence

SIGNATURE_HEADER = "saga-signature"
KEYS_MAX = 2
KEY_MIN_BYTES, KEY_MAX_BYTES = 32, 128
_LABEL = b"saga.v1"


class SignatureError(ValueError):
    """A signature missing, malformed or made by none of the keys."""


def _field(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _mac(key: bytes, topic: str, msg_key: bytes, value: bytes) -> bytes:
    return hmac.new(key, _field(_LABEL) + _field(topic.encode()) + _field(msg_key)
                    + _field(value), hashlib.sha256).digest()


class Keys:
    """One service's keys (1 or 2): the first signs, any verifies."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not 1 <= len(keys) <= KEYS_MAX:
            raise ValueError(f"{len(keys)} keys: give 1 to {KEYS_MAX}")
        for i, k in enumerate(keys, 1):
            if not KEY_MIN_BYTES <= len(k) <= KEY_MAX_BYTES:
                raise ValueError(f"key {i} is {len(k)} bytes: a key is {KEY_MIN_BYTES} to "
                                 f"{KEY_MAX_BYTES} bytes")
        self._keys = tuple(bytes(k) for k in keys)

    @classmethod
    def from_hex(cls, hexes: Sequence[str]) -> Keys:
        out = []
        for i, h in enumerate(hexes, 1):
            try:
                out.append(bytes.fromhex(h.strip()))
            except ValueError:
                raise ValueError(f"key {i} is not hex") from None
        return cls(out)

    @classmethod
    def load(cls, path: str) -> Keys:
        """The key file at path: one hex key a line, '#' comments and blank
        lines skipped, at most 2. Refused when others may read or write it,
        as libsaga refuses it. The keys never appear in an error."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise OSError(f"key file {path}: {e.strerror}") from None
        if st.st_mode & (stat.S_IRWXO):
            raise PermissionError(f"key file {path} may be read or written by others "
                                  f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod o-rwx {path}")
        keys: list[bytes] = []
        with open(path, encoding="ascii", errors="replace") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    k = bytes.fromhex(line)
                except ValueError:
                    raise ValueError(f"key file {path}, line {n}: not a key in hex") from None
                if not KEY_MIN_BYTES <= len(k) <= KEY_MAX_BYTES:
                    raise ValueError(f"key file {path}, line {n}: a key of {len(k)} bytes; "
                                     f"a key is {KEY_MIN_BYTES} to {KEY_MAX_BYTES} bytes "
                                     "(openssl rand -hex 32)")
                if len(keys) == KEYS_MAX:
                    raise ValueError(f"key file {path}, line {n}: more than {KEYS_MAX} keys")
                keys.append(k)
        if not keys:
            raise ValueError(f"key file {path} holds no key")
        return cls(keys)

    def sign(self, topic: str, msg_key: bytes, value: bytes) -> str:
        """The saga-signature header's value: "v1=" and 64 lower-case hex digits."""
        return "v1=" + _mac(self._keys[0], topic, msg_key, value).hex()

    def verify(self, topic: str, msg_key: bytes, value: bytes,
               signature: str | bytes | None) -> None:
        """Returns when one of the keys made signature; SignatureError otherwise."""
        if signature is None:
            raise SignatureError(f"no {SIGNATURE_HEADER} header")
        sig = signature.decode("ascii", "replace") if isinstance(signature, bytes) else signature
        if len(sig) != 67 or not sig.startswith("v1="):
            raise SignatureError(f"{SIGNATURE_HEADER} is not v1=<64 hex digits>")
        try:
            got = bytes.fromhex(sig[3:])
        except ValueError:
            raise SignatureError(f"{SIGNATURE_HEADER} is not v1=<64 hex digits>") from None
        ok = False
        for k in self._keys:  # every key, each compared in constant time
            ok |= hmac.compare_digest(_mac(k, topic, msg_key, value), got)
        if not ok:
            raise SignatureError(f"{SIGNATURE_HEADER} was made by none of the service's keys")
