#!/usr/bin/env bash
# Conditional steps ("when", docs/DEFINITIONS.md) on a real sagad, with the
# example services: an order paid by voucher skips the credit
# step (not_run in the database, sagactl show and the API) and completes,
# the customer's credit untouched; when a later step fails, only what ran
# is compensated (no release_credit for the step that did not run); an
# order with an amount reserves credit as usual.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init conditions
it_services
mkdir -p "$work/sagas"
# The order saga, its credit step only for an order not paid by voucher
# (an order without "payment" is paid on credit: != is true for missing).
python3 - sagas/order.json "$work/sagas/order_voucher.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["name"] = "order_voucher"
for s in d["steps"]:
    if s["name"] == "reserve_credit":
        s["when"] = "${input.payment} != 'voucher'"
json.dump(d, open(sys.argv[2], "w"), indent=2)
PY
"$bin/sagactl" validate "$work/sagas/order_voucher.json" >/dev/null
cat >"$work/sagas/noop.json" <<'JSON'
{"name": "noop", "steps": [{"name": "never", "service": "order", "action": "create_order",
  "when": "false"}]}
JSON
it_sagad "$work/sagas"
reserved() { psql "$SAGA_PG_URL" -Atq -c "SELECT reserved FROM payment.customers WHERE id = 'alice'"; }
step_status() { psql "$SAGA_PG_URL" -Atq -c "SELECT status FROM saga.saga_step WHERE saga_id = '$1' AND name = '$2'"; }
events() { psql "$SAGA_PG_URL" -Atq -c "SELECT string_agg(e.kind || ':' || coalesce(st.name, ''), ' ' ORDER BY e.id) FROM saga.saga_event e LEFT JOIN saga.saga_step st ON st.saga_id = e.saga_id AND st.idx = e.step WHERE e.saga_id = '$1'"; }

before=$(reserved)
id=$("$bin/sagactl" start order_voucher --input '{"customer_id":"alice","sku":"widget","quantity":1,"amount":30,"payment":"voucher"}')
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *completed* ]] || fail "the voucher order: $out $(events "$id")"
[[ $(step_status "$id" reserve_credit) == not_run ]] || fail "reserve_credit is $(step_status "$id" reserve_credit)"
[[ $(reserved) == "$before" ]] || fail "credit reserved: $before -> $(reserved)"
[[ $(events "$id") == *"step_not_run:reserve_credit"* && $(events "$id") != *"step_dispatched:reserve_credit"* ]] ||
    fail "history: $(events "$id")"
"$bin/sagactl" show "$id" | grep -q "reserve_credit.*not_run" || fail "sagactl show: $("$bin/sagactl" show "$id")"
curl -sS "$base/v1/sagas/$id" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["steps"][1]["status"] == "not_run", s' ||
    fail "the API does not show not_run"
# A saga with nothing to run ends as it starts: a long poll on it is
# answered at once (its row is inserted already completed).
id=$(curl -sS -X POST "$base/v1/sagas" -H 'Content-Type: application/json' \
    -d '{"definition":"noop","input":{}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t0=$(date +%s)
out=$(curl -sS "$base/v1/sagas/$id?wait=60s")
(($(date +%s) - t0 < 30)) && [[ $out == *'"completed"'* ]] || fail "a saga with nothing to run: $out"
ok "paid by voucher: reserve_credit not run (database, history, sagactl show, the API), the order completed, credit untouched"

id=$("$bin/sagactl" start order_voucher --input '{"customer_id":"alice","sku":"gadget","quantity":5,"amount":30,"payment":"voucher"}')
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *compensated* ]] || fail "the failing voucher order: $out $(events "$id")"
ev=$(events "$id")
[[ $ev == *"compensation_dispatched:create_order"* && $ev != *"compensation_dispatched:reserve_credit"* && $ev != *"compensation_not_needed:reserve_credit"* ]] ||
    fail "compensation touched the step not run: $ev"
ok "by voucher, too little stock: reserve_stock failed, only create_order compensated (nothing for the step not run)"

id=$("$bin/sagactl" start order_voucher --input '{"customer_id":"alice","sku":"widget","quantity":1,"amount":25}')
out=$("$bin/sagactl" wait "$id" --timeout 60s) || true
[[ $out == *completed* && $(step_status "$id" reserve_credit) == succeeded ]] || fail "amount 25: $out $(step_status "$id" reserve_credit)"
[[ $(reserved) == $((before + 25)) ]] || fail "credit reserved: $before -> $(reserved), not +25"
ok "no voucher (no payment field): reserve_credit ran and reserved 25"
echo "test_conditions: passed"
