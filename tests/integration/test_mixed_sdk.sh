#!/usr/bin/env bash
# One saga, three languages (issue 16 item 4): the order saga
# (sagas/order.json) with a real sagad, its create_order / approve_order
# served by the C order-service (libsaga), reserve_credit by the Python
# payment participant (sdk/python/examples/payment_participant.py) and
# reserve_stock by the Go inventory participant (sdk/go/cmd/inventory-go):
#   1. success, and a failure (not enough stock, answered by Go) whose
#      compensation runs in Python and C;
#   2. duplicates: every command on the three command topics produced
#      again, each answered from its barrier (no handler runs twice, the
#      business state does not move);
#   3. a participant killed mid-handler (kill -9 while its handler's
#      transaction is open: SAGA_EXAMPLE_STALL_MS), then started again
#      (the same static group member): the saga completes once, its effect
#      is there once — for the Go and for the Python participant;
#   4. signals through both SDKs' clients: a saga (Python credit, a wait
#      step, Go stock) goes on with the payload the Python client sent
#      (its resend absorbed as a duplicate), one is compensated by the Go
#      client's failed verdict, a signal to an ended saga is refused (409)
#      in both.
# The business state (orders.orders, payment.customers/reservations,
# inventory.stock/reservations, each service's command_log) is checked
# after each. Reuses test_python_sdk.sh's virtualenv (build/venv-sdk) and
# test_go_sdk.sh's Go caches (build/go-sdk).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/mixed-sdk-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
db=it_mixed_$$
admin="postgresql://$user@$hostport/postgres"
declare -A pid=()
t0=$SECONDS
fail() { echo "test_mixed_sdk: FAIL: $*" >&2; exit 1; }
ok() { echo "test_mixed_sdk: ok ($((SECONDS - t0)) s): $*"; }
cleanup() {
    local rc=$?
    for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $rc -ne 0 ]] && tail -n 30 "$work"/*.log >&2 2>/dev/null
    psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

# ---- Python (the shared virtualenv) and Go (the shared caches)
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
venv=$PWD/build/venv-sdk
sdk/python/scripts/venv.sh "$venv" "$work/pip.log" >/dev/null || fail "the virtualenv (sdk/python/scripts/venv.sh)"
py=$venv/bin/python
PATH=$PATH:/usr/local/go/bin # where the official archive puts it
command -v go >/dev/null || fail "no go on PATH (Go 1.26 or later)"
(export GOCACHE=$root/build/go-sdk/cache GOPATH=$root/build/go-sdk/path \
    GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOMAXPROCS=2
 cd sdk/go && go build -o "$work/inventory-go" ./cmd/inventory-go) >"$work/go.log" 2>&1 ||
    fail "go build ./cmd/inventory-go: $(cat "$work/go.log")"
# go-signal SAGA NAME PAYLOAD ID [REASON]: the Go client's Signal (REASON:
# the failed verdict); prints the result or the problem's status and code.
mkdir -p "$work/go-signal"
cat >"$work/go-signal/main.go" <<'GO'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/sagad/saga-go/client"
)

func main() {
	o := client.SignalOptions{ID: os.Args[4]}
	if os.Args[3] != "" {
		o.Payload = json.RawMessage(os.Args[3])
	}
	if len(os.Args) > 5 {
		o.Failed, o.Reason = true, os.Args[5]
	}
	r, err := client.New(os.Getenv("SAGA_API_URL"), "").Signal(context.Background(), os.Args[1], os.Args[2], o)
	var p *client.Problem
	switch {
	case errors.As(err, &p):
		fmt.Println("problem", p.Status, p.Code)
	case err != nil:
		fmt.Println("error", err)
		os.Exit(1)
	default:
		fmt.Println("signal", r.ID, "duplicate", r.Duplicate)
	}
}
GO
(export GOCACHE=$root/build/go-sdk/cache GOPATH=$root/build/go-sdk/path \
    GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOMAXPROCS=2
 cd "$work/go-signal" && go mod init go-signal &&
 go mod edit -require github.com/sagad/saga-go@v0.0.0 -replace "github.com/sagad/saga-go=$root/sdk/go" &&
 go mod tidy && go build -o "$work/go-signal/go-signal" .) >"$work/go.log" 2>&1 ||
    fail "go build of the Go client's signal: $(cat "$work/go.log")"
# The order saga, and one with a wait step between a Python and a Go step.
mkdir -p "$work/sagas"
cp sagas/order.json "$work/sagas/"
cat >"$work/sagas/mixed_approval.json" <<'JSON'
{
  "name": "mixed_approval",
  "defaults": { "timeout": "10s" },
  "steps": [
    { "name": "reserve_credit", "service": "payment", "action": "reserve_credit",
      "compensation": "release_credit",
      "input": { "customer_id": "${input.customer_id}", "amount": "${input.amount}",
                 "order_id": "${input.order_id}" } },
    { "name": "approval", "wait": { "signal": "approval", "timeout": "60s" } },
    { "name": "reserve_stock", "service": "inventory", "action": "reserve_stock",
      "compensation": "release_stock",
      "input": { "sku": "${input.sku}", "quantity": "${steps.approval.output.quantity}",
                 "order_id": "${input.order_id}" } }
  ]
}
JSON
ok "the Python SDK in build/venv-sdk, inventory-go built"

# ---- the services and sagad, as test_api.sh starts them
export SAGA_PG_URL="postgresql://$user@$hostport/$db" SAGA_TOPIC_PREFIX="mixed$$."
psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
"$bin/sagactl" migrate --dir migrations >/dev/null
start() { # NAME COMMAND...: started in the background, waited for "ready"
    local name=$1
    shift
    "$@" >>"$work/$name.log" 2>&1 &
    pid[$name]=$!
    for _ in $(seq 1 300); do
        [[ $(grep -c ": ready$" "$work/$name.log" 2>/dev/null) -gt ${ready[$name]:-0} ]] && break
        kill -0 "${pid[$name]}" 2>/dev/null || fail "$name exited: $(tail -n 5 "$work/$name.log")"
        sleep 0.1
    done
    ready[$name]=$(grep -c ": ready$" "$work/$name.log") || fail "$name did not get ready"
}
declare -A ready=()
stop() { # NAME: SIGTERM, wait, forget
    kill -TERM "${pid[$1]}"
    wait "${pid[$1]}" || fail "$1 exited $?: $(tail -n 5 "$work/$1.log")"
    unset "pid[$1]"
}
# Each participant is a static group member (SAGA_INSTANCE_ID, unique to
# this run): started again after a kill, it takes its partitions back at
# once instead of after the dead member's session timeout.
unset SAGA_INSTANCE_ID
start order "$bin/order-service"
SAGA_INSTANCE_ID=payment-py-$$ start payment-py "$py" sdk/python/examples/payment_participant.py
SAGA_INSTANCE_ID=inventory-go-$$ start inventory-go "$work/inventory-go"
psql "$SAGA_PG_URL" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
"$bin/sagad" --definitions "$work/sagas" --http 127.0.0.1:0 >"$work/sagad.log" 2>&1 &
pid[sagad]=$!
for _ in $(seq 1 600); do grep -qs "sagad running" "$work/sagad.log" && break; sleep 0.1; done
port=$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$work/sagad.log" | sed 's/.*://') ||
    fail "sagad did not say where it serves the API"
export SAGA_API_URL=http://127.0.0.1:$port
ok "order-service (C), payment_participant.py (Python), inventory-go (Go) and sagad up"

q() { psql "$SAGA_PG_URL" -Atc "$1"; }
expect() { # SQL WANT WHAT
    local got
    got=$(q "$1")
    [[ $got == "$2" ]] || fail "$3: $(tr '\n' ' ' <<<"$got"), not $(tr '\n' ' ' <<<"$2")"
}
# run KEY INPUT [STATUS]: start it through the Python client; with STATUS,
# wait for it and check it ended so. Prints the saga id.
run() {
    "$py" - "$@" <<'PY'
import json, os, sys
from saga_sdk import Client
c = Client(os.environ["SAGA_API_URL"])
key, text = sys.argv[1], sys.argv[2]
s = c.start("order", json.loads(text), business_key=key, idempotency_key=key)
if len(sys.argv) > 3:
    done = c.wait(s.id, 60)
    assert done.status == sys.argv[3], f"saga {s.id} ({key}): {done.status}: {done.raw}"
    found = c.find(key)
    assert [x.id for x in found] == [s.id], f"{key}: {[x.id for x in found]}"
print(s.id)
PY
}
# state: everything a saga can change, one line
state() {
    q "SELECT (SELECT string_agg(id || '=' || reserved, ',' ORDER BY id) FROM payment.customers)
        || ' ' || (SELECT string_agg(sku || '=' || available, ',' ORDER BY sku) FROM inventory.stock)
        || ' orders ' || (SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM
             (SELECT status, count(*) n FROM orders.orders GROUP BY status) o)
        || ' payment ' || (SELECT coalesce(string_agg(status || ':' || n, ',' ORDER BY status), '-')
             FROM (SELECT status, count(*) n FROM payment.reservations GROUP BY status) r)
        || ' inventory ' || (SELECT coalesce(string_agg(status || ':' || n, ',' ORDER BY status), '-')
             FROM (SELECT status, count(*) n FROM inventory.reservations GROUP BY status) r)
        || ' log ' || (SELECT count(*) FROM orders.command_log) || '/'
        || (SELECT count(*) FROM payment.command_log) || '/'
        || (SELECT count(*) FROM inventory.command_log)"
}

# ---- 1. success and compensation across the three languages
ok_id=$(run mixed-ok '{"customer_id":"alice","sku":"widget","quantity":2,"amount":1500}' completed) ||
    fail "the saga that should complete"
no_id=$(run mixed-no '{"customer_id":"alice","sku":"gadget","quantity":5,"amount":700}' compensated) ||
    fail "the saga that should be compensated"
expect "SELECT status FROM orders.orders WHERE saga_id = '$ok_id'" approved "the completed saga's order (C)"
expect "SELECT status FROM payment.reservations WHERE saga_id = '$ok_id'" reserved "its credit (Python)"
expect "SELECT status FROM inventory.reservations WHERE saga_id = '$ok_id'" reserved "its stock (Go)"
expect "SELECT status FROM orders.orders WHERE saga_id = '$no_id'" cancelled "the compensated saga's order (C)"
expect "SELECT status FROM payment.reservations WHERE saga_id = '$no_id'" released "its credit (Python)"
expect "SELECT count(*) FROM inventory.reservations WHERE saga_id = '$no_id'" 0 "its stock (Go said no)"
expect "SELECT reserved FROM payment.customers WHERE id = 'alice'" 1500 "alice's reserved credit"
expect "SELECT sku || '=' || available FROM inventory.stock ORDER BY sku" $'gadget=1\nwidget=8' "the stock"
expect "SELECT count(*) FROM inventory.command_log WHERE saga_id = '$no_id'" 0 \
    "Go's writes of the failed action (rolled back)"
expect "SELECT phase || ' ' || outcome || ' ' || (reply->>'status') || ' ' || (reply->'error'->>'code')
        FROM inventory.saga_barrier WHERE saga_id = '$no_id'" "invoke handled failed insufficient_stock" \
    "Go's barrier row for the failed action"
ok "$ok_id completed (C order approved, Python credit reserved, Go stock reserved); $no_id compensated (Go: insufficient_stock; Python released the credit, C cancelled the order)"

# ---- 2. duplicates: every command produced again, on all three topics
before=$(state)
"$py" - "$SAGA_KAFKA_BROKERS" "$SAGA_TOPIC_PREFIX" >"$work/replay.out" 2>&1 <<'PY' || fail "replaying: $(cat "$work/replay.out")"
import sys, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
brokers, prefix = sys.argv[1], sys.argv[2]
meta = Consumer({"bootstrap.servers": brokers, "group.id": "x"})
def ends(topic: str) -> int:
    md = meta.list_topics(topic, timeout=10).topics[topic]
    return sum(meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
               for p in md.partitions)
def replies() -> int:
    return sum(ends(t) for t in meta.list_topics(timeout=10).topics if t.startswith(f"{prefix}reply"))
p = Producer({"bootstrap.servers": brokers})
before, n = replies(), {}
for svc in ("order", "payment", "inventory"):
    cmd = f"{prefix}cmd.{svc}"
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"replay-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([cmd])
    total, n[svc], idle = ends(cmd), 0, time.monotonic()
    while n[svc] < total and time.monotonic() - idle < 20:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        p.produce(cmd, key=m.key(), value=m.value(), headers=m.headers())
        n[svc], idle = n[svc] + 1, time.monotonic()
    c.close()
    assert n[svc] == total, f"{svc}: {n[svc]} of {total} commands read"
assert p.flush(10) == 0
deadline, want = time.monotonic() + 60, before + sum(n.values())
while replies() < want:
    assert time.monotonic() < deadline, f"{replies() - before} of {sum(n.values())} replies"
    time.sleep(0.2)
print(" ".join(f"{k}={v}" for k, v in n.items()))
PY
read -r n_order n_payment n_inventory < <(tr -d 'a-z=' <"$work/replay.out")
[[ $(state) == "$before" ]] || fail "the replayed commands changed the state: $(state), not $before"
stop payment-py
stop inventory-go
grep -q "stopped: .* $n_payment duplicates" "$work/payment-py.log" ||
    fail "Python did not answer its $n_payment duplicates: $(grep stopped "$work/payment-py.log")"
grep -q "stopped: .* $n_inventory duplicates" "$work/inventory-go.log" ||
    fail "Go did not answer its $n_inventory duplicates: $(grep stopped "$work/inventory-go.log")"
ok "commands produced again ($(cat "$work/replay.out")): every one answered from its barrier (C, Python, Go), no handler ran twice, state unchanged: $before"

# ---- 3. killed mid-handler, started again
# killed NAME SERVICE-STEP-TABLE INPUT START...: NAME started stalling in
# its handler; a saga whose handler there is killed with SIGKILL while its
# transaction is open, then NAME started again (same static member).
killed() {
    local name=$1 table=$2 input=$3 key id
    shift 3
    key=mixed-kill-$name
    SAGA_EXAMPLE_STALL_MS=60000 start "$name" "$@"
    id=$(run "$key" "$input") || fail "starting $key"
    for _ in $(seq 1 600); do grep -qs "stalling .* saga=$id" "$work/$name.log" && break; sleep 0.1; done
    grep -qs "stalling .* saga=$id" "$work/$name.log" || fail "$name's handler did not run for $id"
    expect "SELECT count(*) FROM $table WHERE saga_id = '$id'" 0 "$name's effect before it committed"
    kill -KILL "${pid[$name]}"
    wait "${pid[$name]}" 2>/dev/null || true
    unset "pid[$name]"
    expect "SELECT count(*) FROM $table WHERE saga_id = '$id'" 0 "$name's effect after the kill"
    start "$name" "$@"
    id2=$(run "$key" "$input" completed) || fail "$key after $name was killed and started again"
    [[ $id2 == "$id" ]] || fail "$key: a second saga $id2"
    kill_id=$id
}
before_stock=$(q "SELECT available FROM inventory.stock WHERE sku = 'widget'")
SAGA_INSTANCE_ID=payment-py-$$ start payment-py "$py" sdk/python/examples/payment_participant.py
SAGA_INSTANCE_ID=inventory-go-$$ killed inventory-go inventory.reservations '{"customer_id":"bob","sku":"widget","quantity":3,"amount":100}' \
    "$work/inventory-go"
go_id=$kill_id
expect "SELECT status || ' ' || quantity FROM inventory.reservations WHERE saga_id = '$go_id'" "reserved 3" \
    "the Go participant's reservation"
expect "SELECT available FROM inventory.stock WHERE sku = 'widget'" $((before_stock - 3)) "widget's stock"
expect "SELECT count(*) FROM inventory.command_log WHERE saga_id = '$go_id'" 1 \
    "reserve_stock runs committed (the killed one rolled back)"
expect "SELECT count(*) FROM inventory.saga_barrier WHERE saga_id = '$go_id'" 1 "Go's barrier rows"
expect "SELECT status FROM orders.orders WHERE saga_id = '$go_id'" approved "its order"
ok "inventory-go killed (SIGKILL) in reserve_stock's open transaction for $go_id, started again: the saga completed once, 3 widgets reserved once"

stop payment-py
SAGA_INSTANCE_ID=payment-py-$$ killed payment-py payment.reservations '{"customer_id":"bob","sku":"widget","quantity":1,"amount":250}' \
    "$py" sdk/python/examples/payment_participant.py
py_id=$kill_id
expect "SELECT status || ' ' || amount FROM payment.reservations WHERE saga_id = '$py_id'" "reserved 250" \
    "the Python participant's reservation"
expect "SELECT reserved FROM payment.customers WHERE id = 'bob'" 350 "bob's reserved credit (100 + 250)"
expect "SELECT count(*) FROM payment.command_log WHERE saga_id = '$py_id' AND action = 'reserve_credit'" 1 \
    "reserve_credit runs committed (the killed one rolled back)"
expect "SELECT available FROM inventory.stock WHERE sku = 'widget'" $((before_stock - 4)) "widget's stock"
expect "SELECT status FROM orders.orders WHERE saga_id = '$py_id'" approved "its order"
ok "payment_participant.py killed (SIGKILL) in reserve_credit's open transaction for $py_id, started again: the saga completed once, 250 reserved once"

# ---- 4. signals through the Python and the Go client
# start_approval KEY INPUT: a mixed_approval saga, waited for until it
# waits at its signal (reserve_credit done in Python); prints its id.
start_approval() {
    local id
    id=$("$py" -c '
import json, os, sys
from saga_sdk import Client
print(Client(os.environ["SAGA_API_URL"]).start("mixed_approval", json.loads(sys.argv[2]),
      business_key=sys.argv[1], idempotency_key=sys.argv[1]).id)' "$1" "$2") || return 1
    for _ in $(seq 1 300); do
        [[ $(q "SELECT status FROM payment.reservations WHERE saga_id = '$id'") == reserved ]] && break
        sleep 0.1
    done
    echo "$id"
}
# py_signal SAGA NAME [PAYLOAD-JSON ID FAILED REASON]: the Python client's signal
py_signal() {
    "$py" - "$@" <<'PY'
import json, os, sys
from saga_sdk import APIError, Client
a = sys.argv[1:] + [""] * 6
try:
    s = Client(os.environ["SAGA_API_URL"]).signal(a[0], a[1], json.loads(a[2]) if a[2] else None,
        id=a[3] or None, failed=a[4] == "failed", reason=a[5] or None)
    print("signal", s.id, "duplicate", s.duplicate)
except APIError as e:
    print("problem", e.status, e.code)
PY
}
yes_id=$(start_approval mixed-approve '{"customer_id":"alice","amount":200,"sku":"widget","order_id":"o-yes"}') ||
    fail "starting mixed-approve"
rej_id=$(start_approval mixed-reject '{"customer_id":"alice","amount":300,"sku":"widget","order_id":"o-no"}') ||
    fail "starting mixed-reject"
stock=$(q "SELECT available FROM inventory.stock WHERE sku = 'widget'")
out=$(py_signal "$yes_id" approval '{"quantity":2,"by":"ann"}' ann-1)
[[ $out == "signal ann-1 duplicate False" ]] || fail "the Python client's signal: $out"
out=$(py_signal "$yes_id" approval '{"quantity":2,"by":"ann"}' ann-1)
[[ $out == "signal ann-1 duplicate True" ]] || fail "the Python client's signal again: $out"
out=$("$work/go-signal/go-signal" "$rej_id" approval "" bob-1 "over budget")
[[ $out == "signal bob-1 duplicate false" ]] || fail "the Go client's failed verdict: $out"
run_wait() { "$py" -c '
import os, sys
from saga_sdk import Client
print(Client(os.environ["SAGA_API_URL"]).wait(sys.argv[1], 60).status)' "$1"; }
[[ $(run_wait "$yes_id") == completed ]] || fail "the approved saga: $(run_wait "$yes_id")"
[[ $(run_wait "$rej_id") == compensated ]] || fail "the rejected saga: $(run_wait "$rej_id")"
expect "SELECT quantity || ' ' || status FROM inventory.reservations WHERE saga_id = '$yes_id'" "2 reserved" \
    "the stock reserved with the signal's quantity (Go)"
expect "SELECT available FROM inventory.stock WHERE sku = 'widget'" $((stock - 2)) "widget's stock"
expect "SELECT status FROM payment.reservations WHERE saga_id = '$rej_id'" released "the rejected saga's credit (Python)"
expect "SELECT reserved FROM payment.customers WHERE id = 'alice'" 1700 "alice's reserved credit (1500 + 200)"
out=$(py_signal "$yes_id" approval '{"quantity":1}' ann-2)
[[ $out == "problem 409 refused" ]] || fail "the Python client's signal to an ended saga: $out"
out=$("$work/go-signal/go-signal" "$rej_id" approval '{"quantity":1}' bob-2)
[[ $out == "problem 409 refused" ]] || fail "the Go client's signal to an ended saga: $out"
ok "signals: $yes_id went on with the Python client's payload (quantity 2 reserved by Go; the resend absorbed), $rej_id was compensated by the Go client's failed verdict (credit released); both clients refused (409) for an ended saga"

# ---- the end: every saga's business state once more, graceful stops
expect "SELECT count(*) FROM saga.saga WHERE name = 'order' AND status = 'completed'" 3 "completed sagas"
expect "SELECT count(*) FROM saga.saga WHERE name = 'order' AND status = 'compensated'" 1 "compensated sagas"
expect "SELECT status || ':' || count(*) FROM orders.orders GROUP BY status ORDER BY status" \
    $'approved:3\ncancelled:1' "orders"
stop payment-py
stop inventory-go
stop order
ok "final state: $(state)"
echo "test_mixed_sdk: passed in $((SECONDS - t0)) s"
