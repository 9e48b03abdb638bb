#!/usr/bin/env bash
# The signature test vectors (tests/data/sign/vectors.json, shown in
# docs/PROTOCOL.md) recomputed from the protocol's definition with Python's
# own hmac module: an implementation independent of libsaga's libcrypto
# one (tests/unit/test_sign.c checks libsaga against the same file).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 - tests/data/sign/vectors.json <<'PY'
import hashlib
import hmac
import json
import struct
import sys


def field(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


doc = json.load(open(sys.argv[1], encoding="utf-8"))
bad = 0
for v in doc["vectors"]:
    msg = (field(b"saga.v1") + field(v["topic"].encode()) +
           field(v["message_key"].encode()) + field(v["value"].encode()))
    got = "v1=" + hmac.new(bytes.fromhex(v["key_hex"]), msg, hashlib.sha256).hexdigest()
    if got != v["signature"]:
        print(f"test_sign_vectors: {v['name']}: computed {got}, the file says {v['signature']}",
              file=sys.stderr)
        bad += 1
if len(doc["vectors"]) < 5:
    print("test_sign_vectors: fewer than 5 vectors", file=sys.stderr)
    bad += 1
sys.exit(1 if bad else 0)
PY
