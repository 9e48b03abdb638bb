"""A saga participant: consume the service's commands, run the handler
registered for each action or compensation inside the barrier's
transaction, reply, and store the consumed offsets only after Kafka
acknowledged the replies. What libsaga's participant does
(sdk/src/saga_participant*.c), in Python; docs/SDK-PYTHON.md says where
they differ."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar, Union

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.admin import AdminClient

from . import barrier
from .protocol import (ERROR_MESSAGE_MAX, Command, Phase, ProtocolError, Reply, cut_utf8,
                       decode_command, encode_reply, reply_from_object, reply_object)
from .sign import SIGNATURE_HEADER, Keys, SignatureError

BATCH_MAX = 200
FLUSH_TIMEOUT_S = 30.0
TOPIC_PARTITIONS = 4
LOG_WINDOW_S, LOG_BURST = 10.0, 20
CODE_MAX, MESSAGE_MAX = 63, 511  # what libsaga's result keeps (char[64], char[512])

log = logging.getLogger("saga_sdk.participant")


@dataclass(frozen=True)
class Ok:
    """Done: the effect is committed with the barrier row."""
    output: dict[str, Any] | None = None


@dataclass(frozen=True)
class Failed:
    """A definite business "no": the handler's writes are rolled back and
    the answer is kept for duplicates."""
    code: str
    message: str = ""


@dataclass(frozen=True)
class Retry:
    """Transient trouble: everything rolled back, nothing kept; sagad sends
    the command again after the step's backoff (at least after_ms)."""
    message: str = ""
    after_ms: int = 0


Outcome = Union[Ok, Failed, Retry]
Handler = Callable[[Command, "psycopg.Connection[Any] | None"], Outcome]
H = TypeVar("H", bound=Handler)


def ok(output: dict[str, Any] | None = None) -> Ok:
    return Ok(output)


def failed(code: str, message: str = "") -> Failed:
    return Failed(code, message)


def retry(message: str = "", after_ms: int = 0) -> Retry:
    return Retry(message, max(after_ms, 0))


class ParticipantError(Exception):
    """The participant cannot start or go on (bad options, no database,
    no broker, a fatal consumer error): fix it, or restart the process."""


@dataclass
class Stats:
    """Counters since the participant was made (libsaga's names)."""
    received: int = 0
    handled: int = 0
    duplicates: int = 0
    null_compensations: int = 0
    hanging_refused: int = 0
    malformed: int = 0
    unknown_action: int = 0
    replied_ok: int = 0
    replied_failed: int = 0
    replied_retry: int = 0
    handler_calls: int = 0
    handler_time_ns: int = 0
    dead_lettered: int = 0
    undeliverable: int = 0
    output_too_large: int = 0
    unauthenticated: int = 0
    log_suppressed: int = 0


# Errors that producing the same message again cannot cure (libsaga's
# cannot_heal): the message or its topic is wrong. Anything else heals.
_CANNOT_HEAL = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG,
                KafkaError.INVALID_RECORD, KafkaError.TOPIC_EXCEPTION,
                KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._UNKNOWN_TOPIC, KafkaError._INVALID_ARG}


@dataclass
class _Failure:
    count: int = 0
    why: str = ""


def read_options_file(path: str) -> dict[str, str]:
    """librdkafka settings, one key=value a line ('#' comments), as libsaga
    reads kafka_options_file; refused when others may read it (it holds
    passwords). A value is never quoted in an error."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ParticipantError(f"Kafka options file {path}: {e.strerror}") from None
    if st.st_mode & stat.S_IRWXO:
        raise ParticipantError(f"Kafka options file {path} may be read by others: "
                               f"chmod o-rwx {path}")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            k, eq, v = line.partition("=")
            if not eq or not k.strip():
                raise ParticipantError(f"Kafka options file {path}, line {n}: not key=value")
            out[k.strip()] = v.strip()
    return out


class Participant:
    """One instance of participant service `service`: consumes
    <prefix>cmd.<service> in consumer group saga-svc-<service> (as libsaga),
    answers on the command's reply_to.

    With db_url, every handler runs in one PostgreSQL transaction with the
    barrier row (table saga_barrier in db_schema, libsaga's layout): write
    the business effect on the connection the handler gets and do not
    commit; the participant does, with the barrier row."""

    def __init__(self, service: str, brokers: str, *, db_url: str | None = None,
                 db_schema: str | None = None, topic_prefix: str | None = None,
                 group_id: str | None = None, instance_id: str | None = None,
                 key_file: str | None = None, kafka_options: dict[str, str] | None = None,
                 kafka_options_file: str | None = None, max_output_bytes: int = 262144,
                 max_redeliveries: int = 3, dead_letter_topic: str | None = None,
                 topic_timeout_s: float = 10.0) -> None:
        if not service or not brokers:
            raise ParticipantError("a participant needs brokers and service (non-empty): "
                                   f"brokers is {brokers!r}, service is {service!r}")
        if db_schema is not None and not db_schema.replace("_", "a").isalnum():
            raise ParticipantError(f'db_schema "{db_schema}": use letters, digits and \'_\'')
        self.service = service
        self.prefix = topic_prefix or "saga."
        self.cmd_topic = f"{self.prefix}cmd.{service}"
        self.reply_topic = f"{self.prefix}reply"
        self.own_reply_topic = f"{self.prefix}reply.{service}"
        self.dead_topic = (f"{self.prefix}dead.{service}" if dead_letter_topic is None
                           else dead_letter_topic)
        self.max_output_bytes = max_output_bytes
        self.max_redeliveries = max_redeliveries
        self.stats = Stats()
        self._handlers: dict[tuple[Phase, str], Handler] = {}
        self._stop = False
        self._closed = False
        self._failed: dict[tuple[int, int], _Failure] = {}
        self._delivery_failures = 0
        self._log_window = time.monotonic()
        self._log_lines = 0
        self._keys = Keys.load(key_file) if key_file else None
        self._db_url, self._db_schema = db_url, db_schema
        self._db: psycopg.Connection[Any] | None = None
        options = dict(read_options_file(kafka_options_file) if kafka_options_file else {})
        options.update(kafka_options or {})
        common = {"bootstrap.servers": brokers, "client.id": f"saga-svc-{service}",
                  "socket.nagle.disable": True, "log_level": 3}
        self._max_message_bytes = int(options.get("message.max.bytes", 1000000))
        try:
            if db_url is not None:
                self._db = self._connect()
                barrier.init(self._db)
            self._producer = Producer({**common, "enable.idempotence": True, "linger.ms": 1,
                                       **options})
            self._ensure_topics({**common, **options}, topic_timeout_s)
            cons = {**common, "group.id": group_id or f"saga-svc-{service}",
                    "enable.auto.commit": True, "auto.commit.interval.ms": 200,
                    "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6000, "heartbeat.interval.ms": 2000,
                    "fetch.wait.max.ms": 100, **options}
            if instance_id:
                cons["group.instance.id"] = instance_id
            self._consumer = Consumer(cons)
            self._consumer.subscribe([self.cmd_topic])
        except psycopg.Error as e:
            raise ParticipantError(f"cannot use PostgreSQL: {e}") from None
        except barrier.BarrierError as e:
            raise ParticipantError(str(e)) from None
        except KafkaException as e:
            raise ParticipantError(f"Kafka: {e.args[0].str() if e.args else e}") from None

    # ---- setup

    def _connect(self) -> psycopg.Connection[Any]:
        assert self._db_url is not None
        opts = f"-c search_path={self._db_schema}" if self._db_schema else None
        conn = psycopg.connect(self._db_url, options=opts) if opts else psycopg.connect(
            self._db_url)
        conn.add_notice_handler(lambda diag: None)  # a library does not print
        return conn

    def _ensure_topics(self, conf: dict[str, Any], timeout_s: float) -> None:
        """The command, dead-letter and own reply topics, with 4 partitions,
        made when missing and waited for until they have leaders. Where the
        broker lets the service create none (ACLs), they must exist."""
        admin = AdminClient({k: v for k, v in conf.items()
                             if k not in ("enable.idempotence", "linger.ms")})
        topics = [t for t in (self.cmd_topic, self.dead_topic, self.own_reply_topic) if t]
        futures = admin.create_topics([NewTopic(t, TOPIC_PARTITIONS, 1) for t in topics],
                                      request_timeout=timeout_s)
        for t, fut in futures.items():
            try:
                fut.result(timeout=timeout_s)
            except KafkaException as e:
                code = e.args[0].code()
                if code not in (KafkaError.TOPIC_ALREADY_EXISTS,
                                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                    raise ParticipantError(f"creating topic {t}: {e.args[0].str()}") from None
            except Exception as e:  # a timeout: concurrent.futures.TimeoutError
                raise ParticipantError(f"creating topic {t}: no answer from the broker in "
                                       f"{timeout_s:g} s ({e!r})") from None
        deadline = time.monotonic() + timeout_s
        while True:
            md = admin.list_topics(timeout=timeout_s)
            ready = all(t in md.topics and md.topics[t].error is None and md.topics[t].partitions
                        and all(p.leader >= 0 for p in md.topics[t].partitions.values())
                        for t in topics)
            if ready:
                return
            if time.monotonic() > deadline:
                raise ParticipantError(f"topics {', '.join(topics)} have no leaders after "
                                       f"{timeout_s:g} s")
            time.sleep(0.1)

    def on(self, phase: Phase, name: str, fn: Handler) -> None:
        """Register fn for the action (phase "invoke") or compensation
        ("compensate") name. A second handler for one phase and name is an
        error, as in libsaga."""
        if phase not in ("invoke", "compensate") or not name:
            raise ValueError(f"phase {phase!r} and name {name!r}: phase is invoke or "
                             "compensate, name non-empty")
        if (phase, name) in self._handlers:
            raise ValueError(f"a handler for {phase} {name} is already registered")
        self._handlers[(phase, name)] = fn

    def action(self, name: str) -> Callable[[H], H]:
        """Decorator: @p.action("reserve_credit")."""
        def register(fn: H) -> H:
            self.on("invoke", name, fn)
            return fn
        return register

    def compensation(self, name: str) -> Callable[[H], H]:
        """Decorator: @p.compensation("release_credit")."""
        def register(fn: H) -> H:
            self.on("compensate", name, fn)
            return fn
        return register

    # ---- logging, rate-limited as libsaga's (20 lines per 10 s)

    def _warn(self, msg: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now - self._log_window >= LOG_WINDOW_S:
            self._log_window, self._log_lines = now, 0
        if self._log_lines >= LOG_BURST:
            self.stats.log_suppressed += 1
            return
        self._log_lines += 1
        log.log(level, "%s", msg)

    # ---- handling one command

    def _where(self, m: Message) -> str:
        return f"{m.topic()}[{m.partition()}]@{m.offset()}"

    def _reply(self, cmd: Command, out: Outcome) -> Reply:
        """The reply to cmd: version 2 with its element when cmd is an
        element's (version 2), else version 1."""
        v, element = cmd.v, cmd.element if cmd.is_element else 0
        if isinstance(out, Ok):
            return Reply(cmd.saga_id, cmd.step, cmd.phase, cmd.command_id, cmd.attempt, "ok",
                         output=out.output if out.output is not None else {}, v=v,
                         element=element)
        status: Literal["failed", "retry"] = "failed" if isinstance(out, Failed) else "retry"
        code = out.code if isinstance(out, Failed) else "retry"
        after = out.after_ms if isinstance(out, Retry) else 0
        return Reply(cmd.saga_id, cmd.step, cmd.phase, cmd.command_id, cmd.attempt, status,
                     error_code=cut_utf8(code or "error", CODE_MAX),
                     error_message=cut_utf8(out.message, MESSAGE_MAX), retry_after=after,
                     v=v, element=element)

    def _limit_output(self, cmd: Command, out: Outcome) -> Outcome:
        """An ok output over max_output_bytes (measured as PostgreSQL prints
        jsonb) becomes failed / message_too_large, as in libsaga."""
        if not isinstance(out, Ok) or out.output is None:
            return out
        ceiling = self._max_message_bytes - 16384 if self._max_message_bytes > 32768 else 16384
        limit = self.max_output_bytes if 0 < self.max_output_bytes <= ceiling else ceiling
        size = len(json.dumps(out.output, ensure_ascii=False).encode())
        if size <= limit:
            return out
        self.stats.output_too_large += 1
        self._warn(f"command {cmd.command_id}: the output of {size} bytes is over the limit "
                   f"of {limit} bytes; answered failed with message_too_large")
        return Failed("message_too_large", f"the output of {size} bytes is over the limit of "
                      f"{limit} bytes (max_output_bytes)")

    def _call(self, fn: Handler, cmd: Command, db: psycopg.Connection[Any] | None) -> Outcome:
        start = time.monotonic_ns()
        try:
            out: object = fn(cmd, db)
        except psycopg.Error as e:
            out = Retry(f"participant {self.service} database error: {e}", 1000)
        except Exception as e:  # a bug or a transient trouble: no effect, tried again
            self._warn(f"handler for {cmd.phase} {cmd.action} raised {type(e).__name__}: {e}")
            out = Retry(f"handler for {cmd.action} raised {type(e).__name__}: {e}")
        finally:
            self.stats.handler_calls += 1
            self.stats.handler_time_ns += time.monotonic_ns() - start
        if not isinstance(out, (Ok, Failed, Retry)):
            return Retry(f"handler for {cmd.action} set no result")
        return out

    def _with_barrier(self, fn: Handler, cmd: Command) -> Reply:
        """The barrier's verdict, the handler, the command's row written
        with the reply, COMMIT: one transaction, one barrier write. A
        failed handler's writes are rolled back (the barrier wrote nothing
        before the handler: the whole transaction goes) and its answer
        recorded in a new one. retry leaves no trace."""
        try:
            if self._db is None or self._db.broken or self._db.closed:
                self._db = self._connect()
            conn = self._db
            verdict, kept = barrier.enter(conn, cmd)
            word = "handled"
            out: Outcome
            if verdict is barrier.Verdict.NULL_COMPENSATION:
                self.stats.null_compensations += 1
                out = Ok({"null_compensation": True})
                word = "null_compensation"
            elif verdict is barrier.Verdict.PROCEED:
                out = self._call(fn, cmd, conn)
                if isinstance(out, Retry):
                    conn.rollback()
                    return self._reply(cmd, out)
                if (isinstance(out, Ok) and conn.info.transaction_status
                        == psycopg.pq.TransactionStatus.INERROR):
                    conn.rollback()
                    return self._reply(cmd, Retry(f"handler for {cmd.action} reported ok but "
                                                  "its transaction failed"))
                out = self._limit_output(cmd, out)
                if isinstance(out, Failed):
                    conn.rollback()  # the handler's writes; its answer is kept below
            if verdict in (barrier.Verdict.PROCEED, barrier.Verdict.NULL_COMPENSATION):
                reply = self._reply(cmd, out)
                verdict, kept = barrier.record(conn, cmd, reply_object(reply), word)
                if verdict is barrier.Verdict.PROCEED:
                    conn.commit()
                    return reply
            # Seen before, or while the handler ran (another delivery, or
            # the action's compensation, wrote the row first): nothing of
            # this run stays, and the stored answer is given.
            conn.rollback()
            return self._settled(cmd, verdict, kept)
        except psycopg.Error as e:
            try:
                if self._db is not None and not self._db.closed:
                    self._db.rollback()
            except psycopg.Error:
                pass
            self._warn(f"command {cmd.command_id}: {e}")
            return self._reply(cmd, Retry(f"participant {self.service} database error: {e}",
                                          1000))

    def _settled(self, cmd: Command, verdict: barrier.Verdict,
                 kept: dict[str, Any] | None) -> Reply:
        """The answer to a command whose barrier row another delivery wrote:
        its kept reply (DUPLICATE) or hanging_action (HANGING)."""
        if verdict is barrier.Verdict.HANGING:
            self.stats.hanging_refused += 1
            which = f"step {cmd.step}" + (f" element {cmd.element}" if cmd.is_element else "")
            return self._reply(cmd, Failed(
                "hanging_action",
                f"{which} of saga {cmd.saga_id} was already compensated; action refused"))
        if kept is None:
            # A row without a reply: not written by this barrier. Ask again
            # later rather than answer with what was just undone.
            return self._reply(cmd, Retry(f"the barrier row of {cmd.command_id} holds no reply",
                                          1000))
        self.stats.duplicates += 1
        # The row is this element's: its reply has the command's version and
        # element already (a row of version 1 aside).
        return dataclasses.replace(reply_from_object(kept, cmd.attempt), v=cmd.v,
                                   element=cmd.element if cmd.is_element else 0)

    def _handle(self, m: Message) -> None:
        self.stats.received += 1
        where = (m.partition() or 0, m.offset() or 0)
        f = self._failed.get(where)
        if f is not None and f.count > self.max_redeliveries:
            del self._failed[where]
            self._dead_letter(m, f"answered {f.count} time(s) but {f.why}")
            return
        value, key = m.value() or b"", m.key() or b""
        headers = m.headers() or []
        if self._keys is not None:
            sig = next((v for k, v in reversed(headers) if k == SIGNATURE_HEADER), None)
            try:
                self._keys.verify(m.topic() or "", key, value, sig)
            except SignatureError as e:
                self.stats.unauthenticated += 1
                self._dead_letter(m, f"unauthenticated: {e}")
                return
        raw_tp = next((v for k, v in reversed(headers) if k == "traceparent"), None)
        tp = raw_tp.encode() if isinstance(raw_tp, str) else raw_tp
        try:
            cmd = decode_command(value, tp.decode("utf-8", "replace") if tp else None)
        except ProtocolError as e:
            self.stats.malformed += 1
            self._dead_letter(m, f"malformed: {e}")
            return
        if cmd.reply_to not in (self.reply_topic, self.own_reply_topic):
            self.stats.malformed += 1
            self._dead_letter(m, f'malformed: field "reply_to" is "{cmd.reply_to[:60]}", not '
                              f"this deployment's reply topic ({self.reply_topic} or "
                              f"{self.own_reply_topic})")
            return
        fn = self._handlers.get((cmd.phase, cmd.action))
        if fn is None:
            self.stats.unknown_action += 1
            what = "action" if cmd.phase == "invoke" else "compensation"
            reply = self._reply(cmd, Failed("unknown_action", f"service {self.service} has no "
                                            f"handler for {what} {cmd.action}"))
        elif self._db_url is not None:
            reply = self._with_barrier(fn, cmd)
        else:
            reply = self._reply(cmd, self._limit_output(cmd, self._call(fn, cmd, None)))
        self._send(m, cmd, reply, tp)
        self.stats.handled += 1

    # ---- Kafka: replies, dead letters, delivery reports

    def _send(self, m: Message, cmd: Command, reply: Reply, tp: bytes | None) -> None:
        text = encode_reply(reply)
        headers: list[tuple[str, str | bytes | None]] = []
        if tp is not None:
            headers.append(("traceparent", tp))  # copied unchanged
        if self._keys is not None:
            headers.append((SIGNATURE_HEADER,
                            self._keys.sign(cmd.reply_to, cmd.saga_id.encode(), text).encode()))
        where = (m.partition() or 0, m.offset() or 0)
        alone = where in self._failed  # refused before: answered in a request of its own
        if alone:
            self._producer.flush(FLUSH_TIMEOUT_S)
        cb = partial(self._delivered, where, alone, False, m.topic() or "")
        for _ in range(2):
            try:
                self._producer.produce(cmd.reply_to, value=text, key=cmd.saga_id.encode(),
                                       headers=headers, on_delivery=cb)
                break
            except BufferError:  # the producer's queue is full: let it drain once
                self._producer.flush(FLUSH_TIMEOUT_S)
            except KafkaException as e:
                cb(e.args[0], None)
                break
        setattr(self.stats, f"replied_{reply.status}",
                getattr(self.stats, f"replied_{reply.status}") + 1)
        self._producer.poll(0)
        if alone:
            self._producer.flush(FLUSH_TIMEOUT_S)

    def _delivered(self, where: tuple[int, int], alone: bool, dead: bool, topic: str,
                   err: KafkaError | None, msg: Message | None) -> None:
        if err is None:
            return
        heals = err.code() not in _CANNOT_HEAL
        at = f"{self.cmd_topic}[{where[0]}]@{where[1]}"
        if dead:
            if heals:
                self._delivery_failures += 1
            self._warn(f"the command at {at} could not be dead-lettered to {self.dead_topic}: "
                       f"{err.str()}; " + ("it will be consumed again" if heals
                                           else "it is skipped"), logging.ERROR)
            return
        self.stats.undeliverable += 1
        self._delivery_failures += 1
        to = msg.topic() if msg is not None else "its reply topic"
        if heals:
            self._warn(f"reply to {to} for the command at {at} not delivered: {err.str()}; it "
                       "will be consumed again")
            return
        f = self._failed.setdefault(where, _Failure())
        f.count += 1 if alone else 0
        f.why = f"its reply to {to} was refused: {err.str()}"
        self._warn(f"reply to {to} for the command at {at} not delivered: {err.str()} "
                   + (f"({f.count} of {self.max_redeliveries + 1}; then it is dead-lettered)"
                      if alone else "; it will be consumed again and answered alone"))

    def _dead_letter(self, m: Message, why: str) -> None:
        """Set the command aside: to the dead-letter topic as it came, with
        libsaga's saga-dead-* headers; its offset is stored with the batch's."""
        self.stats.dead_lettered += 1
        at = self._where(m)
        if not self.dead_topic:
            self._warn(f"the command at {at} was skipped (no dead-letter topic): {why}")
            return
        value = m.value() or b""
        room = self._max_message_bytes - 16384 if self._max_message_bytes > 32768 else 16384
        headers: list[tuple[str, str | bytes | None]] = [("saga-dead-reason", why.encode()), ("saga-dead-topic", self.cmd_topic.encode()),
                   ("saga-dead-partition", str(m.partition()).encode()),
                   ("saga-dead-offset", str(m.offset()).encode()),
                   ("saga-dead-service", self.service.encode())]
        if len(value) > room:
            headers.append(("saga-dead-bytes", str(len(value)).encode()))
            value = value[:room]
        cb = partial(self._delivered, (m.partition() or 0, m.offset() or 0), False, True,
                     m.topic() or "")
        try:
            self._producer.produce(self.dead_topic, value=value, key=m.key(), headers=headers,
                                   on_delivery=cb)
        except (KafkaException, BufferError) as e:
            self._delivery_failures += 1
            self._warn(f"the command at {at} could not be dead-lettered to {self.dead_topic}: "
                       f"{e}; it will be consumed again: {why}", logging.ERROR)
            return
        self._warn(f"the command at {at} was dead-lettered to {self.dead_topic}: {why}")

    # ---- the loop

    def poll(self, timeout_s: float = 0.2) -> int:
        """Handle the commands that arrive within timeout_s (a batch of at
        most 200), reply, wait until Kafka acknowledged every reply, then
        store the consumed offsets (committed every 200 ms). When a reply
        was not delivered, the batch is consumed again (the barrier answers
        the duplicates). Returns how many were handled; 0 after stop()."""
        if self._stop or self._closed:
            return 0
        msgs = self._consumer.consume(num_messages=BATCH_MAX, timeout=timeout_s)
        self._delivery_failures = 0
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        n = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise ParticipantError(f"fatal Kafka consumer error: {err.str()}")
                if err.code() != KafkaError._PARTITION_EOF:
                    self._warn(f"consumer: {err.str()}")
                continue
            self._handle(m)
            key = (m.topic() or "", m.partition() or 0)
            off = m.offset() or 0
            spans[key] = (spans.get(key, (off, off))[0], off)
            n += 1
        if n == 0:
            return 0
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left > 0 or self._delivery_failures > 0:
            self._warn(f"{self._delivery_failures or left} replies not delivered; the batch "
                       "will be consumed again")
            for (t, p), (first, _) in spans.items():
                try:
                    self._consumer.seek(TopicPartition(t, p, first))
                except KafkaException as e:  # revoked meanwhile: its new owner reads it
                    self._warn(f"rewinding {t}[{p}]: {e}")
            return n
        for (t, p), (_, last) in spans.items():  # earlier refusals no longer count
            for w in [w for w in self._failed if w[0] == p and w[1] <= last]:
                del self._failed[w]
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, last + 1) for (t, p), (_, last) in spans.items()])
        except KafkaException as e:
            self._warn(f"storing offsets: {e} (commands may be redelivered)")
        return n

    def run(self) -> None:
        """Poll until stop(). A database outage is waited out (the batch is
        answered retry and consumed again); a fatal Kafka error raises
        ParticipantError: restart the process."""
        while not self._stop:
            self.poll(0.2)

    def stop(self) -> None:
        """run() returns after the current batch; every later poll()
        returns 0. Safe from a signal handler and from another thread."""
        self._stop = True

    def stop_on_signals(self, *signums: int) -> None:
        """stop() on SIGTERM and SIGINT (or the signals given)."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()
        for s in signums or (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, handler)

    def close(self) -> None:
        """Commit the stored offsets, leave the group, flush, close the
        database. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException:
            pass  # nothing stored since the last commit
        self._consumer.close()
        self._producer.flush(5.0)
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> Participant:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["Participant", "ParticipantError", "Ok", "Failed", "Retry", "Outcome", "Handler",
           "Stats", "ok", "failed", "retry", "ERROR_MESSAGE_MAX"]
