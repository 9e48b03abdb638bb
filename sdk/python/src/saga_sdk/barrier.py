"""The barrier: one row per (saga_id, step, phase) in the service's own
PostgreSQL, written in the transaction of the business effect. The same
table and the same statements as libsaga's (sdk/src/saga_barrier.c,
migrations/participant/barrier.sql), so a C and a Python instance of one
service can share one database."""

from __future__ import annotations

import enum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .protocol import Command, JSONObject, command_id

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS saga_barrier ("
    " saga_id uuid NOT NULL,"
    " step int NOT NULL,"
    " phase text NOT NULL CHECK (phase IN ('invoke','compensate')),"
    " command_id text NOT NULL,"
    " outcome text NOT NULL,"
    " reply jsonb,"
    " created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " PRIMARY KEY (saga_id, step, phase))"
)
_CLAIM = ("INSERT INTO saga_barrier (saga_id, step, phase, command_id, outcome)"
          " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
_LOOKUP = ("SELECT outcome, reply FROM saga_barrier"
           " WHERE saga_id = %s AND step = %s AND phase = %s")
_RECORD = ("UPDATE saga_barrier SET reply = %s, outcome = %s"
           " WHERE saga_id = %s AND step = %s AND phase = %s")


class Verdict(enum.Enum):
    PROCEED = "proceed"      # first delivery: run the handler
    DUPLICATE = "duplicate"  # seen before: answer with the kept reply
    NULL_COMPENSATION = "null_compensation"  # the action never ran (or failed)
    HANGING = "hanging"      # an action after its compensation: refuse it


def init(conn: psycopg.Connection[Any]) -> None:
    """Create the table when missing, in the connection's search_path. Where
    the owner made it (migrations/participant/barrier.sql) and the service's
    role may not create tables, this only looks. Commits."""
    row = conn.execute("SELECT to_regclass('saga_barrier') IS NOT NULL").fetchone()
    if not (row and row[0]):
        conn.execute(CREATE_TABLE)
    conn.commit()


def _claim(conn: psycopg.Connection[Any], saga_id: str, step: int, phase: str, cid: str,
           outcome: str) -> bool:
    cur = conn.execute(_CLAIM, (saga_id, step, phase, cid, outcome), prepare=True)
    return cur.rowcount == 1


def _lookup(conn: psycopg.Connection[Any], saga_id: str, step: int,
            phase: str) -> tuple[str | None, JSONObject | None]:
    row = conn.execute(_LOOKUP, (saga_id, step, phase), prepare=True).fetchone()
    if row is None:
        return None, None
    return row[0], row[1]


def enter(conn: psycopg.Connection[Any], cmd: Command) -> tuple[Verdict, JSONObject | None]:
    """Inside the command's open transaction: classify it and claim its row.
    With DUPLICATE comes the kept reply (None if the row holds none)."""
    if not _claim(conn, cmd.saga_id, cmd.step, cmd.phase, cmd.command_id, "handled"):
        outcome, reply = _lookup(conn, cmd.saga_id, cmd.step, cmd.phase)
        if cmd.phase == "invoke" and outcome == "blocked":
            return Verdict.HANGING, None
        return Verdict.DUPLICATE, reply
    if cmd.phase == "invoke":
        return Verdict.PROCEED, None
    # A compensation: if the action's row can be claimed (as blocked), the
    # action never ran and from now on never will.
    if _claim(conn, cmd.saga_id, cmd.step, "invoke",
              command_id(cmd.saga_id, cmd.step, "invoke"), "blocked"):
        return Verdict.NULL_COMPENSATION, None
    # The action ran; if its answer was not ok its writes were rolled back.
    _, reply = _lookup(conn, cmd.saga_id, cmd.step, "invoke")
    ok = isinstance(reply, dict) and reply.get("status") == "ok"
    return (Verdict.PROCEED if ok else Verdict.NULL_COMPENSATION), None


def record(conn: psycopg.Connection[Any], cmd: Command, reply: JSONObject, outcome: str) -> None:
    """In the same transaction: keep the reply sent for cmd, and the outcome
    word ("handled", "null_compensation")."""
    conn.execute(_RECORD, (Jsonb(reply), outcome, cmd.saga_id, cmd.step, cmd.phase),
                 prepare=True)
