"""The barrier: one row per (saga_id, step, element, phase) in the
service's own PostgreSQL, written in the transaction of the business
effect. The same table and the same statements as libsaga's
(sdk/src/saga_barrier.c, migrations/participant/barrier.sql), so a C and a
Python instance of one service can share one database. A command of
version 1 is element 0 (a step either fans out or not). A table made
before libsaga 0.5.0 has no element: init upgrades it as
migrations/participant/barrier_element.sql does.

A command's row is written once, with its reply, after the handler
(record): enter only reads it, except that a compensation whose action
never ran writes the action's row ("blocked") so that the action, arriving
late, is refused. A duplicate delivered while the first is still being
handled finds no row and runs the handler too; its record then finds the
first one's row, and the caller undoes its writes and sends the first
reply."""

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
    " element int NOT NULL DEFAULT 0,"
    " PRIMARY KEY (saga_id, step, element, phase))"
)
# migrations/participant/barrier_element.sql without its comments (the
# tests check that it is that file's statement).
UPGRADE = """DO $$
DECLARE
    pk name;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'saga_barrier'::regclass
               AND attname = 'element' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    LOCK TABLE saga_barrier IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'saga_barrier'::regclass
               AND attname = 'element' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    ALTER TABLE saga_barrier ADD COLUMN element int NOT NULL DEFAULT 0;
    SELECT conname INTO pk FROM pg_constraint
     WHERE conrelid = 'saga_barrier'::regclass AND contype = 'p';
    IF pk IS NOT NULL THEN
        EXECUTE format('ALTER TABLE saga_barrier DROP CONSTRAINT %I', pk);
    END IF;
    ALTER TABLE saga_barrier ADD PRIMARY KEY (saga_id, step, element, phase);
END
$$"""
_OLD_LAYOUT = (
    "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid"
    "  AND attname = 'element' AND NOT attisdropped),"
    " pg_has_role(c.relowner, 'USAGE'), c.relnamespace::regnamespace::text,"
    " current_user::text"
    " FROM pg_class c WHERE c.oid = to_regclass('saga_barrier')")
_CLAIM = ("INSERT INTO saga_barrier (saga_id, step, element, phase, command_id, outcome)"
          " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
_LOOKUP = ("SELECT outcome, reply FROM saga_barrier"
           " WHERE saga_id = %s AND step = %s AND element = %s AND phase = %s")
_RECORD = ("INSERT INTO saga_barrier (saga_id, step, element, phase, command_id, outcome, reply)"
           " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")


class BarrierError(Exception):
    """The barrier table cannot be used as it is (one of an earlier release
    that this role may not upgrade)."""


class Verdict(enum.Enum):
    PROCEED = "proceed"      # first delivery: run the handler
    DUPLICATE = "duplicate"  # seen before: answer with the kept reply
    NULL_COMPENSATION = "null_compensation"  # the action never ran (or failed)
    HANGING = "hanging"      # an action after its compensation: refuse it


def init(conn: psycopg.Connection[Any]) -> None:
    """Create the table when missing, in the connection's search_path. Where
    the owner made it (migrations/participant/barrier.sql) and the service's
    role may not create tables, this only looks. A table of an earlier
    release (no "element" column) is upgraded in one transaction when this
    role owns it; otherwise BarrierError names the script its owner must
    run. Commits."""
    row = conn.execute("SELECT to_regclass('saga_barrier') IS NOT NULL").fetchone()
    if not (row and row[0]):
        conn.execute(CREATE_TABLE)
        conn.commit()
        return
    old = conn.execute(_OLD_LAYOUT).fetchone()
    conn.commit()
    if old is None or not old[0]:
        return
    _, may, schema, role = old
    if not may:
        raise BarrierError(
            f"the barrier table {schema}.saga_barrier predates fan-out elements (it has no "
            f'column "element") and role {role} may not alter it: its owner must run '
            f"migrations/participant/barrier_element.sql in schema {schema}")
    try:
        conn.execute(UPGRADE)
        conn.commit()
    except psycopg.Error as e:
        conn.rollback()
        raise BarrierError(
            f"upgrading the barrier table {schema}.saga_barrier for fan-out elements failed "
            f"(its owner can run migrations/participant/barrier_element.sql): {e}") from e


def _element(cmd: Command) -> int:
    return cmd.element if cmd.is_element else 0


def _claim(conn: psycopg.Connection[Any], cmd: Command, phase: str, cid: str,
           outcome: str) -> bool:
    cur = conn.execute(_CLAIM, (cmd.saga_id, cmd.step, _element(cmd), phase, cid, outcome),
                       prepare=True)
    return cur.rowcount == 1


def _lookup(conn: psycopg.Connection[Any], cmd: Command,
            phase: str) -> tuple[str | None, JSONObject | None]:
    row = conn.execute(_LOOKUP, (cmd.saga_id, cmd.step, _element(cmd), phase),
                       prepare=True).fetchone()
    if row is None:
        return None, None
    return row[0], row[1]


def _seen(conn: psycopg.Connection[Any], cmd: Command) -> tuple[Verdict, JSONObject | None]:
    """Whether cmd's own row exists: DUPLICATE (with its reply), HANGING
    (an action its compensation blocked), or PROCEED when there is none."""
    outcome, reply = _lookup(conn, cmd, cmd.phase)
    if outcome is None:
        return Verdict.PROCEED, None
    if cmd.phase == "invoke" and outcome == "blocked":
        return Verdict.HANGING, None
    return Verdict.DUPLICATE, reply


def enter(conn: psycopg.Connection[Any], cmd: Command) -> tuple[Verdict, JSONObject | None]:
    """Inside the command's open transaction: classify it by its row. With
    DUPLICATE comes the kept reply (None if the row holds none). The own
    row is only read here (record writes it, once, with the reply); a
    compensation whose action never ran writes the action's row, blocked."""
    verdict, reply = _seen(conn, cmd)
    if verdict is not Verdict.PROCEED or cmd.phase == "invoke":
        return verdict, reply
    # A compensation: if the action's row (the same element's) can be
    # claimed (as blocked), the action never ran and from now on never will.
    if _claim(conn, cmd, "invoke",
              command_id(cmd.saga_id, cmd.step, "invoke",
                         cmd.element if cmd.is_element else -1), "blocked"):
        return Verdict.NULL_COMPENSATION, None
    # The action ran; if its answer was not ok its writes were rolled back.
    _, action_reply = _lookup(conn, cmd, "invoke")
    ok = isinstance(action_reply, dict) and action_reply.get("status") == "ok"
    return (Verdict.PROCEED if ok else Verdict.NULL_COMPENSATION), None


def record(conn: psycopg.Connection[Any], cmd: Command, reply: JSONObject,
           outcome: str) -> tuple[Verdict, JSONObject | None]:
    """In the same transaction, after the handler: write cmd's row with the
    reply sent and the outcome word ("handled", "null_compensation"), and
    return PROCEED. When another delivery of cmd (or, for an action, its
    compensation) wrote the row first, while the handler ran, nothing is
    written and the verdict is DUPLICATE (with the row's reply) or HANGING:
    the caller then rolls back this run's writes and answers as for that
    verdict."""
    cur = conn.execute(_RECORD, (cmd.saga_id, cmd.step, _element(cmd), cmd.phase,
                                 cmd.command_id, outcome, Jsonb(reply)), prepare=True)
    if cur.rowcount == 1:
        return Verdict.PROCEED, None
    # The INSERT waited for the other row's transaction to commit: in READ
    # COMMITTED the lookup (a statement of its own) sees it.
    verdict, kept = _seen(conn, cmd)
    if verdict is Verdict.PROCEED:
        raise psycopg.DatabaseError(
            f"barrier record: the row of {cmd.command_id} neither inserted nor found")
    return verdict, kept
