#!/usr/bin/env python3
"""The benchmark's participant (examples/bench_service.c) in Python with
saga_sdk, for scripts/bench's "Participants in Python and Go" runs
(docs/PERFORMANCE.md): service "bench", action "work" (fails definitively
at the step the saga's input names in fail_at, else replies {"step": N})
and compensation "undo" (replies ok, no output), both through the barrier
in schema "bench": one PostgreSQL transaction per command, the barrier row
and nothing else, as the C service does.

    SAGA_KAFKA_BROKERS=... SAGA_PG_URL=... python3 bench_participant.py

Also SAGA_TOPIC_PREFIX, SAGA_KEY_FILE, SAGA_INSTANCE_ID.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import psycopg

from saga_sdk import Command, Outcome, Participant, failed, ok

Db = psycopg.Connection[Any]


def work(cmd: Command, db: Db | None) -> Outcome:
    fail_at = cmd.payload.get("fail_at")
    if isinstance(fail_at, int) and not isinstance(fail_at, bool) and fail_at == cmd.step:
        return failed("bench_failure", f"step {cmd.step} fails on purpose")
    return ok({"step": cmd.step})


def undo(cmd: Command, db: Db | None) -> Outcome:
    return ok()


def main() -> int:
    logging.basicConfig(format="bench-py: %(levelname)s: %(message)s")
    brokers, db_url = os.environ.get("SAGA_KAFKA_BROKERS"), os.environ.get("SAGA_PG_URL")
    if not brokers or not db_url:
        print("bench-py: set SAGA_KAFKA_BROKERS and SAGA_PG_URL", file=sys.stderr)
        return 2
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS bench")
    p = Participant("bench", brokers, db_url=db_url, db_schema="bench",
                    topic_prefix=os.environ.get("SAGA_TOPIC_PREFIX"),
                    key_file=os.environ.get("SAGA_KEY_FILE"),
                    instance_id=os.environ.get("SAGA_INSTANCE_ID") or None)
    p.on("invoke", "work", work)
    p.on("compensate", "undo", undo)
    p.stop_on_signals()
    print("bench-py: ready", file=sys.stderr, flush=True)
    with p:
        p.run()
    s = p.stats
    print(f"bench-py: stopped: {s.handled} handled, {s.duplicates} duplicates, "
          f"{s.null_compensations} null compensations, {s.hanging_refused} hanging refused, "
          f"{s.malformed} malformed, {s.unknown_action} unknown actions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
