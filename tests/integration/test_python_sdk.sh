#!/usr/bin/env bash
# The Python SDK (sdk/python): installed with pip into build/venv-sdk (pinned
# versions, made once and reused; the package itself reinstalled when its
# files change), mypy --strict, its pytest suite (the shared vectors of
# tests/vectors/, every barrier hazard, signatures and offsets against this
# PostgreSQL and Kafka, librdkafka's partitioner on the broker), then the
# order saga with a real sagad and a Python payment participant in place of
# examples/payment_service.c, started and waited for through the SDK's
# HTTP client: one completes, one is compensated, the business state is
# checked; every payment command produced again is answered from the
# barrier (no handler runs twice); and a C and a Python instance of the
# payment service share its barrier table (each answers duplicates of what
# the other handled; a compensation seen by one blocks the action at the
# other).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/python-sdk-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
db=it_pysdk_$$
admin="postgresql://$user@$hostport/postgres"
export SAGA_PG_URL="postgresql://$user@$hostport/$db" SAGA_TOPIC_PREFIX="pysdk$$."
declare -A pid=()
fail() { echo "test_python_sdk: FAIL: $*" >&2; exit 1; }
ok() { echo "test_python_sdk: ok: $*"; }
cleanup() {
    local rc=$?
    for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $rc -ne 0 ]] && tail -n 30 "$work"/*.log >&2 2>/dev/null
    psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

# ---- the virtualenv: pinned tools once; the SDK again when it changed
# (sdk/python/scripts/venv.sh, shared with test_mixed_sdk.sh and
# test_tutorials.sh)
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
venv=$PWD/build/venv-sdk
pins=$(sdk/python/scripts/venv.sh "$venv" "$work/pip.log") || fail "the virtualenv (sdk/python/scripts/venv.sh)"
py=$venv/bin/python
"$venv/bin/pip" check >"$work/pip.log" 2>&1 || fail "pip check: $(cat "$work/pip.log")"
# docs/SDK-PYTHON.md's participant, as printed: type-checked with the rest
# and under 60 lines.
mkdir -p "$work/tutorial"
awk '/<!-- python-tutorial: credit_participant.py -->/ {f=1; next} f && /^```python/ {g=1; next}
     g && /^```/ {exit} g' docs/SDK-PYTHON.md >"$work/tutorial/credit_participant.py"
lines=$(wc -l <"$work/tutorial/credit_participant.py")
[[ $lines -gt 20 && $lines -lt 60 ]] || fail "docs/SDK-PYTHON.md's participant is $lines lines"
"$venv/bin/mypy" --strict --cache-dir "$venv/mypy-cache" sdk/python/src sdk/python/tests \
    sdk/python/examples "$work/tutorial" >"$work/mypy.log" 2>&1 || fail "mypy --strict: $(cat "$work/mypy.log")"
ok "pip install ./sdk/python[test] ($(grep -o 'confluent-kafka==[^ ]*\|psycopg\[binary\]==[^ ]*' <<<"$pins" | tr '\n' ' ')), mypy --strict clean (docs/SDK-PYTHON.md's participant too: $lines lines)"

# ---- pytest: vectors and the live tests, in a database of their own
psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
(cd "$work" && "$venv/bin/pytest" -q -p no:cacheprovider "$OLDPWD/sdk/python/tests") >"$work/pytest.log" 2>&1 ||
    fail "pytest: $(tail -n 40 "$work/pytest.log")"
grep -q skipped "$work/pytest.log" && fail "pytest skipped tests: $(tail -n 5 "$work/pytest.log")"
ok "pytest: $(tail -n 1 "$work/pytest.log")"

# ---- the order saga with a Python payment participant
"$bin/sagactl" migrate --dir migrations >/dev/null
start_svc() { # NAME COMMAND...: start it, wait for its "ready" line
    local name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
    for _ in $(seq 1 300); do grep -qs ready "$work/$name.log" && return 0; sleep 0.1; done
    fail "$name did not get ready"
}
stop_svc() { # NAME: SIGTERM, wait, forget
    kill -TERM "${pid[$1]}"
    wait "${pid[$1]}" || fail "$1 exited $?: $(tail -n 5 "$work/$1.log")"
    unset "pid[$1]"
}
start_svc order "$bin/order-service"
start_svc inventory "$bin/inventory-service"
start_svc payment-py "$py" sdk/python/examples/payment_participant.py
psql "$SAGA_PG_URL" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
"$bin/sagad" --definitions sagas --http 127.0.0.1:0 >"$work/sagad.log" 2>&1 &
pid[sagad]=$!
for _ in $(seq 1 600); do grep -qs "sagad running" "$work/sagad.log" && break; sleep 0.1; done
port=$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$work/sagad.log" | sed 's/.*://') ||
    fail "sagad did not say where it serves the API"
export SAGA_API_URL=http://127.0.0.1:$port

# run_sagas KEY INPUT...: start each through the SDK's client (business key
# KEY-n), wait for it; prints "ID STATUS" a line.
run_sagas() {
    "$py" - "$@" <<'PY'
import json, os, sys
from saga_sdk import Client
c = Client(os.environ["SAGA_API_URL"])
key = sys.argv[1]
for n, text in enumerate(sys.argv[2:]):
    s = c.start("order", json.loads(text), business_key=f"{key}-{n}", idempotency_key=f"{key}-{n}")
    again = c.start("order", json.loads(text), business_key=f"{key}-{n}", idempotency_key=f"{key}-{n}")
    assert again.id == s.id and not again.created and s.created, (s, again)
    done = c.wait(s.id, 90)
    assert [x.id for x in c.find(f"{key}-{n}")] == [s.id]
    print(done.id, done.status)
PY
}
run_sagas py '{"customer_id":"alice","sku":"widget","quantity":2,"amount":1500}' \
    '{"customer_id":"alice","sku":"gadget","quantity":5,"amount":700}' >"$work/run1.out" ||
    fail "the sagas through the client: $(cat "$work/run1.out")"
read -r ok_id ok_status < <(sed -n 1p "$work/run1.out")
read -r no_id no_status < <(sed -n 2p "$work/run1.out")
[[ $ok_status == completed && $no_status == compensated ]] || fail "statuses: $(cat "$work/run1.out")"
q() { psql "$SAGA_PG_URL" -Atc "$1"; }
[[ $(q "SELECT status FROM payment.reservations WHERE saga_id = '$ok_id'") == reserved ]] ||
    fail "the completed saga's credit is not reserved"
[[ $(q "SELECT status FROM payment.reservations WHERE saga_id = '$no_id'") == released ]] ||
    fail "the compensated saga's credit was not released"
[[ $(q "SELECT reserved FROM payment.customers WHERE id = 'alice'") == 1500 ]] ||
    fail "alice's reserved credit is $(q "SELECT reserved FROM payment.customers WHERE id = 'alice'"), not 1500"
ok "order saga with the Python payment participant: $ok_id completed, $no_id compensated (credit reserved, then released), started, found and waited for with saga_sdk.Client"

# replay [N]: produce every command on cmd.payment again (as sagad's
# re-sends would), then wait until the reply topic has that many more.
replay() {
    "$py" - "$SAGA_KAFKA_BROKERS" "${SAGA_TOPIC_PREFIX}" "${1:-}" <<'PY'
import sys, time, uuid, json
from confluent_kafka import Consumer, Producer, TopicPartition
brokers, prefix, extra = sys.argv[1], sys.argv[2], sys.argv[3]
def ends(topic: str) -> int:
    c = Consumer({"bootstrap.servers": brokers, "group.id": "x"})
    md = c.list_topics(topic, timeout=10).topics[topic]
    n = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    c.close()
    return n
cmd, reply = f"{prefix}cmd.payment", f"{prefix}reply.payment"
p = Producer({"bootstrap.servers": brokers})
before = ends(reply)
if extra:  # a command of our own: JSON with key "_key"
    o = json.loads(extra)
    p.produce(cmd, key=o["saga_id"].encode(), value=json.dumps(o).encode())
    n = 1
else:
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"replay-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([cmd])
    total, n, idle = ends(cmd), 0, time.monotonic()
    while n < total and time.monotonic() - idle < 20:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        p.produce(cmd, key=m.key(), value=m.value(), headers=m.headers())
        n, idle = n + 1, time.monotonic()
    c.close()
assert p.flush(10) == 0
deadline = time.monotonic() + 60
while ends(reply) < before + n:
    assert time.monotonic() < deadline, f"{ends(reply) - before} of {n} replies"
    time.sleep(0.2)
print(n)
PY
}
log_rows() { q "SELECT count(*) FROM payment.command_log"; }
rows=$(log_rows)
n=$(replay) || fail "replaying payment's commands"
[[ $(log_rows) == "$rows" ]] || fail "a replayed command ran its handler again ($(log_rows) rows, not $rows)"
stop_svc payment-py
grep -q "stopped: .* $n duplicates" "$work/payment-py.log" ||
    fail "the Python participant did not answer $n duplicates: $(tail -n 1 "$work/payment-py.log")"
ok "$n payment commands produced again: each answered from the barrier by the Python participant, no handler ran twice"

# ---- one barrier table, two languages
start_svc payment-c "$bin/payment-service"
n=$(replay) || fail "replaying to the C participant"
[[ $(log_rows) == "$rows" ]] || fail "the C participant ran a handler the Python one had run"
run_sagas c '{"customer_id":"bob","sku":"widget","quantity":1,"amount":100}' >"$work/run2.out" ||
    fail "a saga with the C participant: $(cat "$work/run2.out")"
read -r c_id c_status <"$work/run2.out"
[[ $c_status == completed ]] || fail "the saga with the C participant: $c_status"
x=$(cat /proc/sys/kernel/random/uuid)
replay "{\"v\":1,\"saga_id\":\"$x\",\"saga\":\"order\",\"saga_version\":1,\"step\":1,\"step_name\":\"reserve_credit\",\"phase\":\"compensate\",\"action\":\"release_credit\",\"command_id\":\"$x/1/compensate\",\"attempt\":1,\"reply_to\":\"${SAGA_TOPIC_PREFIX}reply.payment\",\"payload\":{\"input\":{},\"output\":null}}" >/dev/null ||
    fail "a compensation for an action that never ran, to the C participant"
stop_svc payment-c
grep -q "stopped: .* $n duplicates, 1 null compensations" "$work/payment-c.log" ||
    fail "the C participant: $(tail -n 1 "$work/payment-c.log")"
rows=$(log_rows)
start_svc payment-py2 "$py" sdk/python/examples/payment_participant.py
m=$(replay) || fail "replaying to the Python participant"
[[ $(log_rows) == "$rows" ]] || fail "the Python participant ran a handler the C one had run"
replay "{\"v\":1,\"saga_id\":\"$x\",\"saga\":\"order\",\"saga_version\":1,\"step\":1,\"step_name\":\"reserve_credit\",\"phase\":\"invoke\",\"action\":\"reserve_credit\",\"command_id\":\"$x/1/invoke\",\"attempt\":1,\"reply_to\":\"${SAGA_TOPIC_PREFIX}reply.payment\",\"payload\":{\"customer_id\":\"alice\",\"order_id\":\"o\",\"amount\":1}}" >/dev/null ||
    fail "the late action, to the Python participant"
stop_svc payment-py2
grep -q "stopped: .* $m duplicates, 0 null compensations, 1 hanging refused" "$work/payment-py2.log" ||
    fail "the Python participant: $(tail -n 1 "$work/payment-py2.log")"
[[ $(q "SELECT count(*) FROM payment.reservations WHERE saga_id = '$x'") == 0 ]] ||
    fail "the hanging action took effect"
[[ $(q "SELECT reserved FROM payment.customers WHERE id = 'bob'") == 100 ]] || fail "bob's credit"
ok "one barrier table: the C participant answered the Python one's $n commands from it and the Python one the C one's ($c_id among them); a compensation the C one saw first blocked the action at the Python one (hanging_action)"
echo "test_python_sdk: passed"
