"""The participant against a real PostgreSQL and Kafka (make check's):
every hazard of the barrier (also per element of a fan-out step), one
barrier write per command, two deliveries of one command handled at once,
a barrier table of an earlier release upgraded, dead letters, traceparent,
signatures, offsets committed, and librdkafka's partitioner on a real
broker."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from conftest import VECTORS, services
from saga_sdk import Command, Keys, Participant, ParticipantError, decode_reply, failed, ok, retry
from saga_sdk import barrier
from saga_sdk.participant import Outcome
from saga_sdk.protocol import Phase, command_id, decode_command
from saga_sdk.sign import SIGNATURE_HEADER

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-3a1d0c8e5b7f9a21-01"


class World:
    """A prefix and a schema of their own; produce commands as sagad would,
    read the replies and dead letters."""

    def __init__(self, pg: str, brokers: str, keys: Keys | None = None) -> None:
        tag = uuid.uuid4().hex[:10]
        self.pg, self.brokers, self.keys = pg, brokers, keys
        self.prefix, self.schema, self.service = f"pyt{tag}.", f"pyt_{tag}", "svc"
        self.reply_topic = f"{self.prefix}reply.{self.service}"
        self.cmd_topic = f"{self.prefix}cmd.{self.service}"
        self.producer = Producer({"bootstrap.servers": brokers})
        with psycopg.connect(pg, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {self.schema}")
            c.execute(f"CREATE TABLE {self.schema}.effects (saga_id uuid, step int, phase text)")
        self.calls: dict[str, int] = {}
        self.replies: list[tuple[Any, list[tuple[str, bytes]]]] = []
        self.dead: list[dict[str, bytes]] = []

    def participant(self, **kw: Any) -> Participant:
        p = Participant(self.service, self.brokers, db_url=self.pg, db_schema=self.schema,
                        topic_prefix=self.prefix, **kw)

        def handler(cmd: Command, db: psycopg.Connection[Any] | None) -> Outcome:
            self.calls[cmd.command_id] = self.calls.get(cmd.command_id, 0) + 1
            assert db is not None
            db.execute("INSERT INTO effects VALUES (%s, %s, %s)",
                       (cmd.saga_id, cmd.step, cmd.phase))
            do = cmd.payload.get("do", "ok")
            if do == "fail":
                return failed("no", "refused")
            if do == "retry":
                return retry("busy", 250)
            return ok({"echo": cmd.payload.get("n", 0)})
        p.on("invoke", "act", handler)
        p.on("compensate", "undo", handler)
        return p

    def send(self, saga_id: str, phase: Phase, attempt: int = 1, *, step: int = 0,
             payload: dict[str, Any] | None = None, action: str | None = None,
             raw: bytes | None = None, reply_to: str | None = None,
             sign: bool = True, element: int | None = None) -> None:
        """A command; with element, to that element of a fan-out step (v 2)."""
        msg: dict[str, Any] = {
            "v": 1, "saga_id": saga_id, "saga": "t", "saga_version": 1, "step": step,
            "step_name": "s", "phase": phase,
            "action": action or ("act" if phase == "invoke" else "undo"),
            "command_id": command_id(saga_id, step, phase), "attempt": attempt,
            "reply_to": reply_to or self.reply_topic, "payload": payload or {}}
        if element is not None:
            msg.update(v=2, element=element,
                       command_id=command_id(saga_id, step, phase, element))
        value = raw if raw is not None else json.dumps(msg).encode()
        headers: list[tuple[str, str | bytes | None]] = [("traceparent", TP.encode())]
        if self.keys is not None and sign:
            headers.append((SIGNATURE_HEADER,
                            self.keys.sign(self.cmd_topic, saga_id.encode(), value).encode()))
        self.producer.produce(self.cmd_topic, value=value, key=saga_id.encode(), headers=headers)
        self.producer.flush(10)

    def read(self, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": f"reader-{uuid.uuid4()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(out) < count and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None and m.error() is None:
                    out.append(m)
        finally:
            c.close()
        assert len(out) >= count, f"{len(out)} of {count} messages on {topic}"
        return out


@pytest.fixture
def world() -> World:
    pg, brokers = services()
    return World(pg, brokers)


def running(p: Participant) -> Iterator[None]:
    t = threading.Thread(target=p.run, daemon=True)
    t.start()
    yield
    p.stop()
    t.join(10)
    p.close()


def replies_by(msgs: list[Any]) -> list[tuple[Any, dict[str, bytes]]]:
    return [(decode_reply(m.value()), dict(m.headers() or [])) for m in msgs]


def test_barrier_hazards(world: World) -> None:
    a, b, c, d, e = (str(uuid.uuid4()) for _ in range(5))
    p = world.participant()
    gen = running(p)
    next(gen)
    sent = [(a, "invoke", 1, {"n": 7}), (a, "invoke", 2, {"n": 7}),     # a duplicate
            (b, "invoke", 1, {"do": "fail"}), (b, "invoke", 2, {"do": "fail"}),
            (c, "invoke", 1, {"do": "retry"}), (c, "invoke", 2, {"do": "retry"}),
            (d, "compensate", 1, {}), (d, "invoke", 1, {}),           # null comp., hanging
            (a, "compensate", 1, {}), (b, "compensate", 1, {})]
    for saga, phase, attempt, payload in sent:
        world.send(saga, phase, attempt, payload=payload)  # type: ignore[arg-type]
    world.send(e, "invoke", action="nobody")
    world.send(e, "invoke", raw=b"{not json", step=1)
    world.send(e, "invoke", step=2, reply_to="elsewhere.reply")
    got = replies_by(world.read(world.reply_topic, len(sent) + 1))
    dead = world.read(f"{world.prefix}dead.{world.service}", 2)
    next(gen, None)

    def one(saga: str, phase: str, attempt: int) -> Any:
        [r] = [r for r, _ in got if (r.saga_id, r.phase, r.attempt) == (saga, phase, attempt)]
        return r
    assert one(a, "invoke", 1).output == {"echo": 7}
    assert one(a, "invoke", 2).output == {"echo": 7}          # from the barrier
    assert world.calls[command_id(a, 0, "invoke")] == 1
    assert one(b, "invoke", 2).error_code == "no" and world.calls[command_id(b, 0, "invoke")] == 1
    assert one(c, "invoke", 2).status == "retry" and one(c, "invoke", 2).retry_after == 250
    assert world.calls[command_id(c, 0, "invoke")] == 2        # retry is not kept
    assert one(d, "compensate", 1).output == {"null_compensation": True}
    assert one(d, "invoke", 1).error_code == "hanging_action"
    assert command_id(d, 0, "compensate") not in world.calls
    assert command_id(d, 0, "invoke") not in world.calls
    assert one(a, "compensate", 1).output == {"echo": 0}     # the action ran: undone
    assert one(b, "compensate", 1).output == {"null_compensation": True}  # it had failed
    assert one(e, "invoke", 1).error_code == "unknown_action"
    assert all(h.get("traceparent") == TP.encode() for _, h in got)
    reasons = sorted(dict(m.headers())["saga-dead-reason"].decode() for m in dead)
    assert reasons[0].startswith("malformed: field \"reply_to\" is \"elsewhere.reply\"")
    assert reasons[1].startswith("malformed: not JSON")
    with psycopg.connect(world.pg) as conn:
        rows = conn.execute(f"SELECT saga_id::text, phase FROM {world.schema}.effects").fetchall()
        barrier = dict(((r[0], r[1]), r[2]) for r in conn.execute(
            f"SELECT saga_id::text, phase, outcome FROM {world.schema}.saga_barrier"))
    assert sorted(rows) == sorted([(a, "invoke"), (a, "compensate")])  # no other effect
    assert barrier[(d, "invoke")] == "blocked"
    assert barrier[(d, "compensate")] == "null_compensation"
    assert (c, "invoke") not in barrier
    assert p.stats.duplicates == 2 and p.stats.null_compensations == 2
    # The offsets were committed: the group's position is past every command.
    cons = Consumer({"bootstrap.servers": world.brokers, "group.id": f"saga-svc-{world.service}"})
    parts = [TopicPartition(world.cmd_topic, i) for i in range(4)]
    committed = cons.committed(parts, timeout=10)
    ends = [cons.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
    cons.close()
    assert [tp.offset if tp.offset >= 0 else 0 for tp in committed] == ends


def test_elements_of_a_step(world: World) -> None:
    """Each element of a fan-out step is a command of its own: its own
    barrier row, its own duplicate, null compensation and hanging action;
    its reply is v 2 with its element."""
    a = str(uuid.uuid4())
    p = world.participant()
    gen = running(p)
    next(gen)
    sent = [("invoke", 0, 1), ("invoke", 1, 1), ("invoke", 1, 2),       # a duplicate of 1
            ("compensate", 2, 1), ("invoke", 2, 1),                     # null comp., hanging
            ("compensate", 0, 1)]                                       # 0 ran: undone
    for phase, element, attempt in sent:
        world.send(a, phase, attempt, element=element, payload={"n": element})  # type: ignore[arg-type]
    world.send(a, "invoke", step=1)                                     # v 1, another step
    got = replies_by(world.read(world.reply_topic, len(sent) + 1))
    next(gen, None)

    def one(phase: str, element: int, attempt: int) -> Any:
        [r] = [r for r, _ in got if (r.step, r.phase, r.element, r.attempt, r.v)
               == (0, phase, element, attempt, 2)]
        assert r.command_id == command_id(a, 0, phase, element)  # type: ignore[arg-type]
        return r
    assert one("invoke", 0, 1).output == {"echo": 0}
    assert one("invoke", 1, 1).output == {"echo": 1}
    assert one("invoke", 1, 2).output == {"echo": 1}         # from element 1's row
    assert world.calls[command_id(a, 0, "invoke", 1)] == 1
    assert one("compensate", 2, 1).output == {"null_compensation": True}
    hanging = one("invoke", 2, 1)
    assert hanging.error_code == "hanging_action"
    assert hanging.error_message.startswith("step 0 element 2 of saga ")
    assert command_id(a, 0, "invoke", 2) not in world.calls
    assert one("compensate", 0, 1).output == {"echo": 0}     # element 0's handler ran
    [v1] = [r for r, _ in got if r.step == 1]
    assert (v1.v, v1.element, v1.status) == (1, 0, "ok")
    with psycopg.connect(world.pg) as conn:
        rows = {(r[0], r[1], r[2]): (r[3], r[4]) for r in conn.execute(
            f"SELECT step, element, phase, outcome, command_id FROM {world.schema}.saga_barrier"
            " WHERE saga_id = %s", (a,))}
    assert rows == {
        (0, 0, "invoke"): ("handled", command_id(a, 0, "invoke", 0)),
        (0, 1, "invoke"): ("handled", command_id(a, 0, "invoke", 1)),
        (0, 2, "compensate"): ("null_compensation", command_id(a, 0, "compensate", 2)),
        (0, 2, "invoke"): ("blocked", command_id(a, 0, "invoke", 2)),
        (0, 0, "compensate"): ("handled", command_id(a, 0, "compensate", 0)),
        (1, 0, "invoke"): ("handled", command_id(a, 1, "invoke")),
    }
    assert (p.stats.duplicates, p.stats.null_compensations, p.stats.hanging_refused) == (1, 1, 1)


def barrier_writes(pg: str, schema: str, backend_pid: int) -> tuple[int, int, int]:
    """saga_barrier's n_tup_ins, n_tup_upd, n_tup_del in schema, once the
    backend backend_pid (the participant's, closed) is gone: a backend
    flushes its statistics as it exits, before it leaves pg_stat_activity
    (while it runs it flushes them only now and then)."""
    with psycopg.connect(pg, autocommit=True) as c:
        deadline = time.monotonic() + 30
        while c.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                        (backend_pid,)).fetchone() is not None:
            assert time.monotonic() < deadline, f"backend {backend_pid} still there"
            time.sleep(0.05)
        c.execute("SELECT pg_stat_clear_snapshot()")
        row = c.execute("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                        " WHERE schemaname = %s AND relname = 'saga_barrier'",
                        (schema,)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_one_barrier_write_per_command(world: World) -> None:
    """The barrier writes each command's row once, with its reply: no claim
    and then an update. Duplicates and retry write nothing."""
    sagas = [str(uuid.uuid4()) for _ in range(4)]
    p = world.participant()
    gen = running(p)
    next(gen)
    assert p._db is not None
    pid = p._db.info.backend_pid
    sent: list[tuple[str, Phase, int, dict[str, Any]]] = []
    for s in sagas[:3]:
        sent += [(s, "invoke", 1, {"n": 1}), (s, "invoke", 2, {"n": 1})]   # and a duplicate
    sent += [(sagas[3], "invoke", 1, {"do": "fail"}), (sagas[3], "invoke", 2, {"do": "fail"}),
             (sagas[0], "invoke", 3, {"do": "retry"}),                   # a duplicate still
             (sagas[0], "compensate", 1, {}), (sagas[1], "compensate", 1, {"do": "retry"})]
    for saga, phase, attempt, payload in sent:
        world.send(saga, phase, attempt, payload=payload)
    got = replies_by(world.read(world.reply_topic, len(sent)))
    next(gen, None)                                                     # closed
    statuses = sorted((r.saga_id, r.phase, r.attempt, r.status) for r, _ in got)
    assert statuses == sorted(
        [(s, "invoke", a, "ok") for s in sagas[:3] for a in (1, 2)]
        + [(sagas[0], "invoke", 3, "ok"), (sagas[3], "invoke", 1, "failed"),
           (sagas[3], "invoke", 2, "failed"), (sagas[0], "compensate", 1, "ok"),
           (sagas[1], "compensate", 1, "retry")])
    # Rows: 3 actions ok, 1 failed, 1 compensation: 5 commands recorded.
    assert barrier_writes(world.pg, world.schema, pid) == (5, 0, 0)
    assert p.stats.duplicates == 5


def command(world: World, saga_id: str, phase: Phase) -> Command:
    return decode_command(json.dumps({
        "v": 1, "saga_id": saga_id, "saga": "t", "saga_version": 1, "step": 0,
        "step_name": "s", "phase": phase, "action": "act" if phase == "invoke" else "undo",
        "command_id": command_id(saga_id, 0, phase), "attempt": 1,
        "reply_to": world.reply_topic, "payload": {}}).encode())


def test_delivered_twice_at_once(world: World) -> None:
    """Two deliveries of one command handled at the same time (two
    instances): both find no row and run the handler; the one whose
    record comes second finds the first one's row, rolls its writes back
    and answers with the first reply. Likewise an action whose compensation
    (at another instance) blocked it while its handler ran is refused, its
    writes rolled back."""
    dup, late = str(uuid.uuid4()), str(uuid.uuid4())
    slow_p, fast_p = world.participant(), world.participant()
    entered, go = threading.Event(), threading.Event()

    def effect(cmd: Command, db: psycopg.Connection[Any] | None, who: str) -> Outcome:
        assert db is not None
        db.execute("INSERT INTO effects VALUES (%s, %s, %s)", (cmd.saga_id, cmd.step, who))
        if who == "slow":
            entered.set()
            assert go.wait(30)
        return ok({"who": who})

    slow: list[Any] = []

    def run_slow(saga: str) -> None:  # the action, its handler held until go
        slow.append(slow_p._with_barrier(lambda c, db: effect(c, db, "slow"),
                                         command(world, saga, "invoke")))

    cases: list[tuple[str, Phase, dict[str, Any]]] = [
        (dup, "invoke", {"who": "fast"}),                     # the same action, at once
        (late, "compensate", {"null_compensation": True})]    # its compensation meanwhile
    try:
        for saga, phase, fast_output in cases:
            entered.clear()
            go.clear()
            slow.clear()
            t = threading.Thread(target=run_slow, args=(saga,))
            t.start()
            assert entered.wait(30)
            fast = fast_p._with_barrier(lambda c, db: effect(c, db, "fast"),
                                        command(world, saga, phase))
            assert (fast.status, fast.output) == ("ok", fast_output)
            go.set()
            t.join(30)
            [answer] = slow
            if phase == "invoke":
                assert (answer.status, answer.output, answer.attempt) == ("ok", {"who": "fast"}, 1)
            else:
                assert (answer.status, answer.error_code) == ("failed", "hanging_action")
        with psycopg.connect(world.pg) as conn:
            effects = conn.execute(f"SELECT saga_id::text, phase FROM {world.schema}.effects"
                                   " ORDER BY 1").fetchall()
            rows = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(
                f"SELECT saga_id::text, phase, outcome, reply->'output' FROM "
                f"{world.schema}.saga_barrier")}
        assert effects == [(dup, "fast")]                 # the slow runs left nothing
        assert rows == {(dup, "invoke"): ("handled", {"who": "fast"}),
                        (late, "invoke"): ("blocked", None),
                        (late, "compensate"): ("null_compensation", {"null_compensation": True})}
        assert (slow_p.stats.duplicates, slow_p.stats.hanging_refused) == (1, 1)
        assert fast_p.stats.null_compensations == 1
    finally:
        go.set()
        slow_p.close()
        fast_p.close()


OLD_BARRIER = """CREATE TABLE saga_barrier (saga_id uuid NOT NULL, step int NOT NULL,
    phase text NOT NULL CHECK (phase IN ('invoke','compensate')),
    command_id text NOT NULL, outcome text NOT NULL, reply jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, step, phase))"""
LAYOUT = """SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
      || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %(t)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
 UNION ALL SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %(t)s::regclass"""


def layout(conn: psycopg.Connection[Any], table: str) -> set[str]:
    return {r[0] for r in conn.execute(LAYOUT, {"t": table})}


def test_old_barrier_table_is_upgraded(world: World) -> None:
    """A table of an earlier release (no element): upgraded at start when
    the role owns it, its rows kept as element 0; refused with the script
    to run when the role may only use it; the script (run twice) makes the
    same table."""
    old = str(uuid.uuid4())
    role, other = f"pyt_role_{uuid.uuid4().hex[:8]}", f"{world.schema}_b"
    with psycopg.connect(world.pg, autocommit=True) as c:
        for schema in (world.schema, other):
            c.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            c.execute(f"SET search_path = {schema}")
            c.execute(OLD_BARRIER)
            c.execute("INSERT INTO saga_barrier (saga_id, step, phase, command_id, outcome)"
                      " VALUES (%s, 0, 'invoke', %s, 'handled')",
                      (old, command_id(old, 0, "invoke")))
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"GRANT USAGE ON SCHEMA {other} TO {role}")
        c.execute(f"GRANT SELECT, INSERT, UPDATE ON {other}.saga_barrier TO {role}")
    try:
        world.participant().close()       # the owner's role: upgraded
        world.participant().close()       # and again: nothing to do
        u = urllib.parse.urlsplit(world.pg)
        role_url = urllib.parse.urlunsplit(
            u._replace(netloc=f"{role}@{u.netloc.rsplit('@', 1)[-1]}"))
        with pytest.raises(ParticipantError) as e:
            Participant(world.service, world.brokers, db_url=role_url, db_schema=other,
                        topic_prefix=world.prefix)
        assert f"{other}.saga_barrier predates fan-out elements" in str(e.value)
        assert "migrations/participant/barrier_element.sql" in str(e.value)
        script = (Path(__file__).resolve().parents[3] / "migrations" / "participant"
                  / "barrier_element.sql").read_text()
        with psycopg.connect(world.pg, autocommit=True) as c:
            assert "element" not in " ".join(layout(c, f"{other}.saga_barrier"))
            c.execute(f"SET search_path = {other}")
            c.execute(script)
            c.execute(script)                                 # idempotent
            c.execute("RESET search_path")
            assert layout(c, f"{world.schema}.saga_barrier") == layout(c, f"{other}.saga_barrier")
            for schema in (world.schema, other):
                assert c.execute(f"SELECT element FROM {schema}.saga_barrier WHERE saga_id = %s",
                                 (old,)).fetchall() == [(0,)]
            fresh = f"{world.schema}_c"
            c.execute(f"CREATE SCHEMA {fresh}")
            c.execute(f"SET search_path = {fresh}")
            c.execute(barrier.CREATE_TABLE)
            c.execute("RESET search_path")
            assert layout(c, f"{fresh}.saga_barrier") == layout(c, f"{other}.saga_barrier")
            assert len(layout(c, f"{fresh}.saga_barrier")) == 10
            c.execute(f"DROP SCHEMA {fresh} CASCADE")
        Participant(world.service, world.brokers, db_url=role_url, db_schema=other,
                    topic_prefix=world.prefix).close()
    finally:
        with psycopg.connect(world.pg, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {other} CASCADE")
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")


def test_signed(world: World, tmp_path: Path) -> None:
    key = "ab" * 32
    world.keys = Keys.from_hex([key])
    kf = tmp_path / "svc.key"
    kf.write_text(f"# the service's key\n{key}\n")
    kf.chmod(0o644)
    with pytest.raises(PermissionError):
        world.participant(key_file=str(kf))
    kf.chmod(0o600)
    p = world.participant(key_file=str(kf))
    gen = running(p)
    next(gen)
    s1, s2 = str(uuid.uuid4()), str(uuid.uuid4())
    world.send(s1, "invoke", sign=False)
    world.send(s2, "invoke")
    [m] = world.read(world.reply_topic, 1)
    [dead] = world.read(f"{world.prefix}dead.{world.service}", 1)
    next(gen, None)
    assert decode_reply(m.value()).saga_id == s2
    world.keys.verify(world.reply_topic, m.key(), m.value(), dict(m.headers())[SIGNATURE_HEADER])
    assert dict(dead.headers())["saga-dead-reason"].startswith(b"unauthenticated: ")
    assert p.stats.unauthenticated == 1


@pytest.mark.parametrize("count", [4, 12])
def test_partitions_on_the_broker(count: int) -> None:
    """confluent-kafka's default partitioner is librdkafka's: each vector
    key lands where tests/vectors/partitions.json says."""
    _, brokers = services()
    topic = f"pyt-part-{uuid.uuid4().hex[:8]}-{count}"
    admin = AdminClient({"bootstrap.servers": brokers})
    for f in admin.create_topics([NewTopic(topic, count, 1)]).values():
        f.result(30)
    doc = json.loads((VECTORS / "partitions.json").read_text(encoding="utf-8"))
    got: dict[str, int] = {}
    prod = Producer({"bootstrap.servers": brokers})
    for _ in range(100):  # until the new topic's metadata is there
        if len(prod.list_topics(topic, timeout=5).topics[topic].partitions) == count:
            break
        time.sleep(0.1)
    for v in doc["vectors"]:
        prod.produce(topic, key=v["key"].encode(), value=b"x",
                     on_delivery=lambda err, m: got.__setitem__(
                         (m.key() or b"").decode(), m.partition() or 0))
    assert prod.flush(30) == 0
    assert got == {v["key"]: v["partitions"][str(count)] for v in doc["vectors"]}
    admin.delete_topics([topic])


def test_stop_is_prompt(world: World) -> None:
    p = world.participant()
    t = threading.Thread(target=p.run, daemon=True)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    p.stop()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 2
    p.close()
    assert p.poll(0) == 0
