#!/usr/bin/env python3
"""The example payment service of examples/payment_service.c, in Python with
saga_sdk: the same actions (reserve_credit, release_credit, charge), the
same tables in schema "payment" and the same barrier table, so it can
replace the C service or run beside it in one consumer group.

    SAGA_KAFKA_BROKERS=... SAGA_PG_URL=... python3 payment_participant.py

Also SAGA_TOPIC_PREFIX, SAGA_KEY_FILE, SAGA_INSTANCE_ID (static group
membership); for tests, SAGA_EXAMPLE_STALL_MS: each reserve_credit sleeps
this long after its writes, before its transaction commits
(tests/integration/test_mixed_sdk.sh kills it there).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import psycopg

from saga_sdk import Command, Outcome, Participant, failed, ok

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS payment;
SET search_path TO payment;
CREATE TABLE IF NOT EXISTS command_log (
 id bigserial PRIMARY KEY, saga_id uuid NOT NULL, step int NOT NULL, phase text NOT NULL,
 action text NOT NULL, attempt int NOT NULL,
 received_at timestamptz NOT NULL DEFAULT clock_timestamp());
ALTER TABLE command_log ADD COLUMN IF NOT EXISTS trace_id text;
ALTER TABLE command_log ADD COLUMN IF NOT EXISTS span_id text;
CREATE TABLE IF NOT EXISTS customers (
 id text PRIMARY KEY, credit_limit bigint NOT NULL CHECK (credit_limit >= 0),
 reserved bigint NOT NULL DEFAULT 0, CHECK (reserved >= 0 AND reserved <= credit_limit));
CREATE TABLE IF NOT EXISTS reservations (
 saga_id uuid PRIMARY KEY, order_id text NOT NULL, customer_id text NOT NULL,
 amount bigint NOT NULL, status text NOT NULL CHECK (status IN ('reserved', 'released')),
 created_at timestamptz NOT NULL DEFAULT now(), released_at timestamptz);
CREATE TABLE IF NOT EXISTS charges (
 saga_id uuid PRIMARY KEY, customer_id text NOT NULL, amount bigint NOT NULL,
 reference text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""
Db = psycopg.Connection[Any]


def logged(cmd: Command, db: Db) -> None:
    """One line per command, and the command_log row the C services write."""
    trace = span = None
    if cmd.traceparent and len(cmd.traceparent) >= 55:
        trace, span = cmd.traceparent[3:35], cmd.traceparent[36:52]
    print(f"{cmd.phase} {cmd.action} saga={cmd.saga_id} step={cmd.step_name} "
          f"attempt={cmd.attempt} trace_id={trace or '-'} span_id={span or '-'}",
          file=sys.stderr, flush=True)
    db.execute("INSERT INTO command_log (saga_id, step, phase, action, attempt, trace_id, span_id)"
               " VALUES (%s, %s, %s, %s, %s, %s, %s)",
               (cmd.saga_id, cmd.step, cmd.phase, cmd.action, cmd.attempt, trace, span))


def field(cmd: Command, key: str, kind: type) -> Any:
    v = cmd.payload.get(key)
    if kind is int and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
        return failed("bad_input", f'{cmd.action}: "{key}" must be a positive integer')
    if kind is str and (not isinstance(v, str) or not v):
        return failed("bad_input", f'{cmd.action}: "{key}" must be a non-empty string')
    return v


def reserve_credit(cmd: Command, db: Db | None) -> Outcome:
    assert db is not None
    logged(cmd, db)
    customer, order_id, amount = (field(cmd, "customer_id", str), field(cmd, "order_id", str),
                                  field(cmd, "amount", int))
    for v in (customer, order_id, amount):
        if not isinstance(v, (str, int)):
            return v  # type: ignore[no-any-return]
    row = db.execute("SELECT credit_limit, reserved FROM customers WHERE id = %s FOR UPDATE",
                     (customer,)).fetchone()
    if row is None:
        return failed("unknown_customer", f'no customer "{customer}"')
    limit, reserved = row
    if limit - reserved < amount:
        return failed("insufficient_credit", f"customer {customer} has {limit - reserved} of "
                      f"{limit} credit available, {amount} needed")
    db.execute("UPDATE customers SET reserved = reserved + %s WHERE id = %s", (amount, customer))
    db.execute("INSERT INTO reservations (saga_id, order_id, customer_id, amount, status)"
               " VALUES (%s, %s, %s, %s, 'reserved')", (cmd.saga_id, order_id, customer, amount))
    stall = int(os.environ.get("SAGA_EXAMPLE_STALL_MS") or 0)
    if stall > 0:
        print(f"stalling {stall} ms saga={cmd.saga_id}", file=sys.stderr, flush=True)
        time.sleep(stall / 1000)
    return ok({"reservation_id": cmd.saga_id, "amount": amount})


def release_credit(cmd: Command, db: Db | None) -> Outcome:
    assert db is not None
    logged(cmd, db)
    row = db.execute(
        "WITH rel AS (UPDATE reservations SET status = 'released', released_at = now()"
        "  WHERE saga_id = %s AND status = 'reserved' RETURNING customer_id, amount)"
        " UPDATE customers c SET reserved = c.reserved - rel.amount FROM rel"
        " WHERE c.id = rel.customer_id RETURNING rel.amount", (cmd.saga_id,)).fetchone()
    return ok({"released": row[0] if row else 0})


def charge(cmd: Command, db: Db | None) -> Outcome:
    assert db is not None
    logged(cmd, db)
    customer, reference, amount = (field(cmd, "customer_id", str), field(cmd, "reference", str),
                                   field(cmd, "amount", int))
    for v in (customer, reference, amount):
        if not isinstance(v, (str, int)):
            return v  # type: ignore[no-any-return]
    row = db.execute("UPDATE customers SET credit_limit = credit_limit - %s WHERE id = %s"
                     " AND credit_limit - reserved >= %s RETURNING credit_limit",
                     (amount, customer, amount)).fetchone()
    if row is None:
        have = db.execute("SELECT credit_limit - reserved FROM customers WHERE id = %s",
                          (customer,)).fetchone()
        if have is None:
            return failed("unknown_customer", f'no customer "{customer}"')
        return failed("insufficient_credit", f"customer {customer} has {have[0]} of credit "
                      f"available, {amount} needed")
    db.execute("INSERT INTO charges (saga_id, customer_id, amount, reference)"
               " VALUES (%s, %s, %s, %s)", (cmd.saga_id, customer, amount, reference))
    return ok({"charge_id": cmd.saga_id, "amount": amount})


def main() -> int:
    logging.basicConfig(format="payment-py: %(levelname)s: %(message)s")
    brokers, db_url = os.environ.get("SAGA_KAFKA_BROKERS"), os.environ.get("SAGA_PG_URL")
    if not brokers or not db_url:
        print("payment-py: set SAGA_KAFKA_BROKERS and SAGA_PG_URL", file=sys.stderr)
        return 2
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(SCHEMA)
    p = Participant("payment", brokers, db_url=db_url, db_schema="payment",
                    topic_prefix=os.environ.get("SAGA_TOPIC_PREFIX"),
                    key_file=os.environ.get("SAGA_KEY_FILE"),
                    instance_id=os.environ.get("SAGA_INSTANCE_ID") or None)
    p.on("invoke", "reserve_credit", reserve_credit)
    p.on("compensate", "release_credit", release_credit)
    p.on("invoke", "charge", charge)
    p.stop_on_signals()
    print("payment-py: ready", file=sys.stderr, flush=True)
    with p:
        p.run()
    s = p.stats
    print(f"payment-py: stopped: {s.handled} handled, {s.duplicates} duplicates, "
          f"{s.null_compensations} null compensations, {s.hanging_refused} hanging refused, "
          f"{s.malformed} malformed, {s.unknown_action} unknown actions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
