#!/usr/bin/env python3
"""A saga participant in Python, written from docs/PROTOCOL.md alone.

Service "pyhello": action "greet" (input {"name"}), compensation "ungreet",
and action "refuse", which always fails definitively. It de-duplicates in
memory (a real participant keeps the barrier in its own database, in the
transaction of the business effect -- PROTOCOL.md, "Duplicates").

Environment: SAGA_KAFKA_BROKERS, SAGA_TOPIC_PREFIX (default "saga.").
"""
import json
import os
import re
import signal
import sys

from confluent_kafka import Consumer, KafkaException, Producer

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SERVICE = "pyhello"
prefix = os.environ.get("SAGA_TOPIC_PREFIX") or "saga."
brokers = os.environ["SAGA_KAFKA_BROKERS"]
running = True
replies = {}  # (saga_id, step, phase) -> reply sent the first time
stats = {"handled": 0, "duplicates": 0, "malformed": 0}


def stop(*_):
    global running
    running = False


def decode(raw):
    """Return the command, or raise ValueError naming what is wrong."""
    if raw is None or len(raw) > 1024 * 1024:
        raise ValueError("empty or larger than 1 MiB")
    cmd = json.loads(raw)
    if not isinstance(cmd, dict):
        raise ValueError("not a JSON object")
    if cmd.get("v") != 1:
        raise ValueError("field v must be 1")
    if not isinstance(cmd.get("saga_id"), str) or not UUID.match(cmd["saga_id"]):
        raise ValueError("field saga_id must be a UUID")
    for key in ("saga", "step_name", "action", "command_id", "reply_to"):
        if not isinstance(cmd.get(key), str) or not cmd[key]:
            raise ValueError("field %s must be a non-empty string" % key)
    for key in ("step", "attempt", "saga_version"):
        if not isinstance(cmd.get(key), int) or isinstance(cmd.get(key), bool):
            raise ValueError("field %s must be an integer" % key)
    if cmd.get("phase") not in ("invoke", "compensate"):
        raise ValueError("field phase must be invoke or compensate")
    payload = cmd.get("payload")
    if payload is None:
        cmd["payload"] = {}
    elif not isinstance(payload, dict):
        raise ValueError("field payload must be an object")
    return cmd


def handle(cmd):
    """The business logic: (status, output, error)."""
    action, phase, payload = cmd["action"], cmd["phase"], cmd["payload"]
    if phase == "invoke" and action == "greet":
        name = payload.get("name")
        if not isinstance(name, str):
            return "failed", None, {"code": "bad_input", "message": "name must be a string"}
        return "ok", {"greeting": "Hello, %s, from Python" % name}, None
    if phase == "invoke" and action == "refuse":
        return "failed", None, {"code": "refused", "message": "this step always says no"}
    if phase == "compensate" and action == "ungreet":
        return "ok", {"ungreeted": True}, None
    return "failed", None, {"code": "unknown_action",
                            "message": "service %s has no %s %s" % (SERVICE, phase, action)}


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "saga-svc-" + SERVICE,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "allow.auto.create.topics": True})
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                         "linger.ms": 1})
    consumer.subscribe([prefix + "cmd." + SERVICE])
    print("pyhello: ready", file=sys.stderr, flush=True)
    while running:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            print("pyhello: consumer: %s" % msg.error(), file=sys.stderr, flush=True)
            continue
        try:
            cmd = decode(msg.value())
        except ValueError as e:
            stats["malformed"] += 1
            print("pyhello: skipped malformed command at %s[%d]@%d: %s"
                  % (msg.topic(), msg.partition(), msg.offset(), e), file=sys.stderr, flush=True)
            consumer.commit(message=msg, asynchronous=False)
            continue
        key = (cmd["saga_id"], cmd["step"], cmd["phase"])
        if key in replies:
            stats["duplicates"] += 1
            reply = dict(replies[key])
        else:
            status, output, error = handle(cmd)
            reply = {"v": 1, "saga_id": cmd["saga_id"], "step": cmd["step"],
                     "phase": cmd["phase"], "command_id": cmd["command_id"], "status": status}
            if status == "ok":
                reply["output"] = output or {}
            else:
                reply["error"] = error
            replies[key] = reply
            stats["handled"] += 1
        reply["attempt"] = cmd["attempt"]
        headers = [(k, v) for k, v in (msg.headers() or []) if k == "traceparent"]
        producer.produce(cmd["reply_to"], key=cmd["saga_id"], value=json.dumps(reply),
                         headers=headers)
        # Commit the command only once its reply is acknowledged.
        if producer.flush(30) == 0:
            consumer.commit(message=msg, asynchronous=False)
    consumer.close()
    print("pyhello: stopped: %s" % stats, file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print("pyhello: %s" % e, file=sys.stderr)
        sys.exit(1)
