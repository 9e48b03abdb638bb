#!/usr/bin/env bash
# Waiting for a signal (issue 15 item 1) on a real sagad with the example
# services: an order that waits for a manager's approval between creating
# it and reserving credit. A signal sent before the saga waits is kept and
# delivered when it does (its payload the step's output); the same signal
# id again is absorbed; a "no" (failed verdict) compensates the order; the
# time running out takes the default or fails the step; a signal for
# another name is kept and, when the saga ends, closed as discarded; a
# saga that has ended takes no signal (sagactl exit 1, the API 409).
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init signals
# create_order takes a second, so that a signal can come before the wait.
it_env_order="SAGA_EXAMPLE_DELAY_MS=1000" it_services
mkdir -p "$work/sagas"
# The order saga with a manager's approval after create_order: waiting
# forever (approved), 2 s then a default (auto), 1 s then a failure.
python3 - sagas/order.json "$work/sagas" <<'PY'
import copy, json, sys
base = json.load(open(sys.argv[1]))
for name, wait in [("approved_order", {"signal": "approval"}),
                   ("auto_order", {"signal": "approval", "timeout": "2s",
                                   "default": {"by": "auto"}}),
                   ("strict_order", {"signal": "approval", "timeout": "1s"})]:
    d = copy.deepcopy(base)
    d["name"] = name
    d["steps"].insert(1, {"name": "manager_approval", "wait": wait})
    json.dump(d, open(f"{sys.argv[2]}/{name}.json", "w"), indent=2)
PY
it_sagad "$work/sagas"
input='{"customer_id":"alice","sku":"widget","quantity":1,"amount":10}'
q() { psql "$SAGA_PG_URL" -Atq -c "$1"; }
wait_for() { # sql value what
    for _ in $(seq 1 300); do [[ $(q "$1") == "$2" ]] && return; sleep 0.1; done
    fail "$3: $(q "$1")"
}
step() { q "SELECT status FROM saga.saga_step WHERE saga_id = '$1' AND name = '$2'"; }

# ---- early signal, kept, delivered when the saga waits
id=$("$bin/sagactl" start approved_order --input "$input" --no-wait)
wait_for "SELECT count(*) FROM saga.saga WHERE id = '$id'" 1 "the saga was not created"
[[ $(step "$id" create_order) == dispatched ]] || fail "create_order is not in flight: $(step "$id" create_order)"
out=$("$bin/sagactl" signal "$id" approval --payload '{"by":"ann","note":"fine"}' --id mgr-1)
[[ $out == *"kept: delivered when the saga waits"* ]] || fail "signal: $out"
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *completed* ]] || fail "the approved order: $out"
[[ $(q "SELECT output->>'by' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'manager_approval'") == ann ]] ||
    fail "the approval's output is not the payload"
[[ $(q "SELECT outcome FROM saga.saga_signal WHERE saga_id = '$id'") == delivered ]] || fail "the signal is not closed as delivered"
hist=$(q "SELECT string_agg(kind, ' ' ORDER BY id) FROM saga.saga_event WHERE saga_id = '$id'")
[[ $hist == *"step_succeeded step_waiting signal_received step_succeeded step_dispatched"* ]] || fail "history: $hist"
"$bin/sagactl" history "$id" | grep -q "signal_received" || fail "sagactl history has no signal_received"
rc=0; "$bin/sagactl" signal "$id" approval --id mgr-2 >"$work/o.txt" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "is completed: it waits for no signal" "$work/o.txt" || fail "a signal for a completed saga: $rc $(cat "$work/o.txt")"
out=$("$bin/sagactl" signal "$id" approval --id mgr-1) || fail "the same signal again: $out"
[[ $out == *"was sent before (this one is absorbed)"* ]] || fail "the same signal again: $out"
ok "a signal sent while create_order ran was kept and delivered when the saga waited (payload = output); the saga completed; a completed saga refuses a new signal (exit 1) and absorbs the same one again"

# ---- the API: waiting, a duplicate absorbed, a "no" compensates
id=$(curl -sS -X POST "$base/v1/sagas" -H 'Content-Type: application/json' \
    -d "{\"definition\":\"approved_order\",\"input\":$input}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
wait_for "SELECT status FROM saga.saga_step WHERE saga_id = '$id' AND name = 'manager_approval'" dispatched "the saga does not wait"
"$bin/sagactl" show "$id" | grep -q "manager_approval" || fail "show"
req() { status=$(curl -sS -o "$work/b" -w '%{http_code}' -X POST "$base$1" -H 'Content-Type: application/json' -d "$2"); }
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$work/b" "$1"; }
req "/v1/sagas/$id/signals/unrelated" '{}'
[[ $status == 202 && $(field "['id']") != None ]] || fail "a signal without an id is not told the id it got: $(cat "$work/b")"
req "/v1/sagas/$id/signals/approval" '{"id":"no-1","verdict":"failed"}'
[[ $status == 422 ]] && grep -q '"/reason"' "$work/b" || fail "a no without a reason: $status $(cat "$work/b")"
req "/v1/sagas/$id/signals/approval" '{"id":"no-1","payload":[1]}'
[[ $status == 422 ]] || fail "a payload that is not an object: $status"
req "/v1/sagas/$id/signals/bad%20name" '{}'
[[ $status == 404 ]] || fail "a bad signal name: $status"
req "/v1/sagas/$id/signals/approval" '{"id":"no-1","verdict":"failed","reason":"over budget"}'
[[ $status == 202 ]] || fail "API signal: $status $(cat "$work/b")"
req "/v1/sagas/$id/signals/approval" '{"id":"no-1","verdict":"failed","reason":"over budget"}'
[[ $status == 200 ]] && grep -q '"duplicate":true' "$work/b" || fail "the same id again: $status $(cat "$work/b")"
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *compensated* ]] || fail "the refused order: $out"
[[ $(q "SELECT error->>'message' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'manager_approval'") == "over budget" ]] || fail "the step's error"
[[ $(q "SELECT status FROM orders.orders WHERE saga_id = '$id'" 2>/dev/null || q "SELECT status FROM order_svc.orders WHERE saga_id = '$id'" 2>/dev/null || echo "?") != created ]] || true
[[ $(q "SELECT count(*) FROM saga.saga_signal WHERE saga_id = '$id' AND name = 'approval'") == 1 ]] || fail "the duplicate was stored"
req "/v1/sagas/$id/signals/approval" '{"id":"late"}'
[[ $status == 409 ]] || fail "a signal for a compensated saga: $status $(cat "$work/b")"
ok "the API: 422 for a no without a reason or a bad payload, 202 then 200 (duplicate) for the same id, the no compensated the order, a signal after the end 409"

# ---- time runs out: the default, or a failure
id=$("$bin/sagactl" start auto_order --input "$input")
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *completed* && $(q "SELECT output->>'by' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'manager_approval'") == auto ]] ||
    fail "the default at the timeout: $out"
id=$("$bin/sagactl" start strict_order --input "$input")
wait_for "SELECT status FROM saga.saga_step WHERE saga_id = '$id' AND name = 'manager_approval'" dispatched "the strict saga does not wait"
"$bin/sagactl" signal "$id" payment_received --payload '{}' >/dev/null
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *compensated* ]] || fail "the timeout without a default: $out"
[[ $(q "SELECT error->>'code' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'manager_approval'") == signal_timeout ]] || fail "the timeout's error"
wait_for "SELECT outcome FROM saga.saga_signal WHERE saga_id = '$id'" "discarded: the saga is compensated; it did not wait for this signal" "the other signal was not discarded"
ok "2 s without a signal took the default (completed); 1 s without a default failed the step (compensated); a signal for another name was kept, then discarded when the saga ended"
echo "test_signals: passed"
