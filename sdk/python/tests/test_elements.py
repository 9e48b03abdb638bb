"""Fan-out elements (protocol version 2) without services: the barrier's
statements are the repository's migrations, element command ids, and the
encoder's range check. The shared vectors (test_vectors.py) cover the
codec; test_live.py the barrier per element and the upgrade."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from saga_sdk import barrier
from saga_sdk.protocol import (ELEMENTS_MAX, PROTOCOL_VERSION_ELEMENTS, Reply, command_id,
                               decode_reply, encode_reply)

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations" / "participant"
ID = "0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22"


def sql_of(path: Path) -> str:
    """A script's statements without comments, whitespace folded."""
    text = "\n".join(line for line in path.read_text().splitlines()
                     if not line.lstrip().startswith("--"))
    return re.sub(r"\s+", " ", text).strip().rstrip(";").replace("( ", "(").replace(" )", ")")


def fold(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").replace("( ", "(").replace(" )", ")")


def test_barrier_table_is_barrier_sql() -> None:
    if not MIGRATIONS.exists():
        pytest.skip("outside the repository")
    assert fold(barrier.CREATE_TABLE) == sql_of(MIGRATIONS / "barrier.sql")


def test_upgrade_is_barrier_element_sql() -> None:
    if not MIGRATIONS.exists():
        pytest.skip("outside the repository")
    assert fold(barrier.UPGRADE) == sql_of(MIGRATIONS / "barrier_element.sql")


def test_command_ids() -> None:
    assert command_id(ID, 2, "invoke") == f"{ID}/2/invoke"
    assert command_id(ID, 2, "compensate", 0) == f"{ID}/2/compensate/0"
    assert command_id(ID, 2, "invoke", 99999) == f"{ID}/2/invoke/99999"
    assert command_id(ID, 2, "invoke", -1) == f"{ID}/2/invoke"


def test_element_reply_round_trip_and_range() -> None:
    r = Reply(ID, 1, "invoke", f"{ID}/1/invoke/7", 1, "ok", output={"x": 1},
              v=PROTOCOL_VERSION_ELEMENTS, element=7)
    back = decode_reply(encode_reply(r))
    assert (back.v, back.element, back.output) == (2, 7, {"x": 1})
    for bad in (-1, ELEMENTS_MAX):
        with pytest.raises(ValueError, match=r"out of range \[0, 99999\]"):
            encode_reply(Reply(ID, 1, "invoke", "c", 1, "ok", v=2, element=bad))
    # Version 1 sends no element, whatever the field holds.
    assert b"element" not in encode_reply(Reply(ID, 1, "invoke", "c", 1, "ok", element=5))
