#!/usr/bin/env bash
# Child sagas ("child", docs/DEFINITIONS.md) on a real sagad, PostgreSQL
# and Kafka with the example services; sagas/cart.json runs
# sagas/shipping.json as its step "ship":
#   - a cart completes: its ship step's output is the child's result, the
#     child is linked both ways (database, sagactl show, history, the API),
#     the courier booked and the pickup scheduled;
#   - a child that fails (more than 50 parcels) undoes itself, and the cart
#     undoes its own steps: nothing booked, lines and credit back;
#   - a completed child is undone when its parent is (a bank transfer that
#     failed, a signal after ship): pickup and courier cancelled;
#   - an operator's retry of the step while the child runs starts no second
#     child (its id is the step's);
#   - the definitions' checks: a child that does not exist, or leads back
#     to its parent, refused by sagactl validate, defs deploy and the API.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init children
it_env_shipping="SAGA_EXAMPLE_DELAY_MS=${CHILD_DELAY_MS:-0}"
it_services order payment inventory shipping
mkdir -p "$work/sagas"
cp sagas/cart.json sagas/shipping.json "$work/sagas/"
it_sagad "$work/sagas"
q() { psql "$SAGA_PG_URL" -Atq -c "$1"; }
stock() { q "SELECT sum(available) FROM inventory.stock"; }
reserved() { q "SELECT reserved FROM payment.customers WHERE id = 'alice'"; }
cart() { # PARCELS [PAYMENT]
    printf '{"customer_id":"alice","amount":40,"parcels":%s,%s"lines":[{"sku":"widget","quantity":1},{"sku":"widget","quantity":2}]}' \
        "$1" "${2:+\"payment\":\"$2\",}"
}
child_of() { q "SELECT child_id FROM saga.saga_child WHERE parent_id = '$1'"; }
status() { q "SELECT status FROM saga.saga WHERE id = '$1'"; }
kinds() { q "SELECT string_agg(kind, ' ' ORDER BY id) FROM saga.saga_event WHERE saga_id = '$1'"; }

stock0=$(stock)
credit0=$(reserved)
id=$("$bin/sagactl" start cart --business-key cart-1 --input "$(cart 3)")
out=$("$bin/sagactl" wait "$id" --timeout 120s) || true
[[ $out == *completed* ]] || fail "the cart: $out; $(kinds "$id")"
child=$(child_of "$id")
[[ -n $child && $(status "$child") == completed ]] || fail "child: '$child' $(status "$child")"
[[ $(q "SELECT parent_id || '/' || parent_step FROM saga.saga WHERE id = '$child'") == "$id/3" ]] ||
    fail "the child does not name its parent"
[[ $(q "SELECT business_key FROM saga.saga WHERE id = '$child'") == cart-1 ]] || fail "the child's business key"
[[ $(q "SELECT output->>'saga_id' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'ship'") == "$child" ]] ||
    fail "ship's output: $(q "SELECT output FROM saga.saga_step WHERE saga_id = '$id' AND name = 'ship'")"
[[ $(q "SELECT output->'steps'->'book_courier'->>'courier' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'ship'") == parcel-post ]] ||
    fail "the child's result is not in ship's output"
[[ $(q "SELECT status FROM shipping.shipments WHERE saga_id = '$child'") == booked &&
    $(q "SELECT status FROM shipping.pickups WHERE saga_id = '$child'") == scheduled ]] || fail "shipping state"
[[ $(q "SELECT detail->>'child_id' FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'child_started'") == "$child" ]] ||
    fail "the parent's history does not name the child: $(kinds "$id")"
[[ $(q "SELECT detail->>'parent_id' FROM saga.saga_event WHERE saga_id = '$child' AND kind = 'saga_started'") == "$id" ]] ||
    fail "the child's history does not name the parent"
shown=$("$bin/sagactl" show "$id")
[[ $shown == *"step ship: child saga $child (shipping), completed"* ]] || fail "sagactl show (parent): $shown"
shown=$("$bin/sagactl" show "$child")
[[ $shown == *"parent    $id (its step 3 started this saga)"* ]] || fail "sagactl show (child): $shown"
curl -sS "$base/v1/sagas/$child" | python3 -c "import json,sys; s=json.load(sys.stdin); assert s['parent'] == {'id': '$id', 'step': 3}, s" ||
    fail "the API's child"
curl -sS "$base/v1/sagas/$id" | python3 -c "import json,sys; s=json.load(sys.stdin); assert s['steps'][3]['child']['id'] == '$child', s" ||
    fail "the API's parent"
ok "a cart completed with its shipping child: ship's output the child's result; linked both ways (database, history, sagactl show, API); courier booked, pickup scheduled"

stock1=$(stock)
credit1=$(reserved)
id=$("$bin/sagactl" start cart --input "$(cart 60)")
out=$("$bin/sagactl" wait "$id" --timeout 120s) || true
[[ $out == *compensated* ]] || fail "60 parcels: $out; $(kinds "$id")"
child=$(child_of "$id")
[[ $(status "$child") == compensated ]] || fail "the child is $(status "$child")"
[[ $(q "SELECT status FROM shipping.shipments WHERE saga_id = '$child'") == cancelled ]] || fail "courier not cancelled"
[[ $(q "SELECT count(*) FROM shipping.pickups WHERE saga_id = '$child'") == 0 ]] || fail "a pickup was scheduled"
[[ $(q "SELECT error->>'code' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'ship'") == child_compensated ]] ||
    fail "ship's error: $(q "SELECT error FROM saga.saga_step WHERE saga_id = '$id' AND name = 'ship'")"
[[ $(stock) == "$stock1" && $(reserved) == "$credit1" ]] || fail "stock $stock1 -> $(stock), credit $credit1 -> $(reserved)"
ok "60 parcels: the child undid its courier and was compensated; the cart's ship step failed (child_compensated) and the cart undid its lines, credit and order"

id=$("$bin/sagactl" start cart --input "$(cart 2 transfer)")
for _ in $(seq 1 600); do
    [[ $(q "SELECT status FROM saga.saga_step WHERE saga_id = '$id' AND name = 'await_transfer'") == dispatched ]] && break
    sleep 0.1
done
child=$(child_of "$id")
[[ $(status "$child") == completed ]] || fail "the child before the transfer: $(status "$child")"
"$bin/sagactl" signal "$id" transfer_received --fail --reason "the bank returned the transfer" >/dev/null
out=$("$bin/sagactl" wait "$id" --timeout 120s) || true
[[ $out == *compensated* ]] || fail "the failed transfer: $out; $(kinds "$id")"
[[ $(status "$child") == compensated ]] || fail "the completed child is $(status "$child"): $(kinds "$child")"
[[ $(q "SELECT status FROM shipping.pickups WHERE saga_id = '$child'") == cancelled &&
    $(q "SELECT status FROM shipping.shipments WHERE saga_id = '$child'") == cancelled ]] || fail "shipment not undone"
[[ $(kinds "$child") == *"saga_completed parent_compensation compensation_started"*"saga_compensated" ]] ||
    fail "the child's history: $(kinds "$child")"
[[ $(kinds "$id") == *"child_compensation_asked child_ended step_compensated"* ]] || fail "the parent's history: $(kinds "$id")"
[[ $(stock) == "$stock1" && $(reserved) == "$credit1" ]] || fail "stock or credit not back"
ok "a failed transfer after shipping: the completed child was undone (pickup, then courier cancelled), then the cart's own steps"

# An operator's retry while the child runs: still one child.
kill -TERM "${pids[3]}"
wait "${pids[3]}" 2>/dev/null || true
id=$("$bin/sagactl" start cart --input "$(cart 1)")
for _ in $(seq 1 600); do [[ -n $(child_of "$id") ]] && break; sleep 0.1; done
child=$(child_of "$id")
[[ -n $child ]] || fail "no child started"
"$bin/sagactl" retry "$id" --reason "test: the shipping service is down" >/dev/null
"$bin/sagactl" retry "$id" --reason "test: again" >/dev/null
env "$bin/shipping-service" >"$work/shipping2.log" 2>&1 &
pids+=($!)
out=$("$bin/sagactl" wait "$id" --timeout 120s) || true
[[ $out == *completed* ]] || fail "after the retries: $out; $(kinds "$id")"
[[ $(q "SELECT count(*) FROM saga.saga WHERE parent_id = '$id'") == 1 &&
    $(q "SELECT count(*) FROM saga.start_request WHERE parent_id = '$id'") == 1 ]] || fail "a second child"
[[ $(q "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'child_started'") -ge 3 ]] ||
    fail "the retries did not start the step again: $(kinds "$id")"
ok "two operator retries while the child waited for its service: one child, the cart completed"

# A link whose delivery fails its transaction every time (a trigger
# refuses it) is put off; the other children's ends still go through.
done_cart=$(q "SELECT id FROM saga.saga WHERE name = 'cart' AND status = 'completed' LIMIT 1")
q "CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
   BEGIN IF NEW.definition = 'poisoned' AND NEW.notified_at IS NOT NULL AND NEW.failures < 5 THEN
   RAISE EXCEPTION 'this link cannot be delivered'; END IF; RETURN NEW; END \$\$;
   CREATE TRIGGER poison BEFORE UPDATE ON saga.saga_child FOR EACH ROW EXECUTE FUNCTION public.poison();
   INSERT INTO saga.saga_child (child_id, parent_id, parent_step, definition, ended_status, ended_at)
   VALUES (gen_random_uuid(), '$done_cart', 7, 'poisoned', 'completed', now() - interval '1 hour')" >/dev/null
id=$("$bin/sagactl" start cart --input "$(cart 1)")
out=$("$bin/sagactl" wait "$id" --timeout 120s) || true
[[ $out == *completed* ]] || fail "behind a poisoned link: $out; $(kinds "$id")"
grep -q "fails its transaction (.*); tried again in a minute" "$work/sagad.log" || fail "the poisoned link was not put off"
# At its fifth failure it is set aside as a dead letter, and no longer tried.
q "UPDATE saga.saga_child SET failures = 4, retry_at = NULL WHERE definition = 'poisoned'" >/dev/null
for _ in $(seq 1 300); do
    [[ $(q "SELECT count(*) FROM saga.dead_letter WHERE source = 'child_link'") == 1 ]] && break
    sleep 0.1
done
[[ $(q "SELECT count(*) FROM saga.dead_letter WHERE source = 'child_link' AND reason LIKE '%this link cannot be delivered%' AND attempts = 5") == 1 ]] ||
    fail "the poisoned link was not set aside: $(q "SELECT source, reason FROM saga.dead_letter")"
[[ $(q "SELECT notified_at IS NOT NULL FROM saga.saga_child WHERE definition = 'poisoned'") == t ]] ||
    fail "the set-aside link is still delivered"
"$bin/sagactl" dead list --source child_link | grep -q child_link || fail "sagactl dead list does not show it"
dl=$(q "SELECT id FROM saga.dead_letter WHERE source = 'child_link'")
"$bin/sagactl" dead replay "$dl" --reason "test: deliver it again" >/dev/null || fail "dead replay of a link"
# Delivered again (and refused again by the trigger: its count starts anew).
[[ $(q "SELECT failures < 5 FROM saga.saga_child WHERE definition = 'poisoned'") == t &&
    $(q "SELECT replayed_at IS NOT NULL FROM saga.dead_letter WHERE id = $dl") == t ]] ||
    fail "the replayed link is not delivered again"
q "DROP TRIGGER poison ON saga.saga_child; DROP FUNCTION public.poison()" >/dev/null
ok "a link that fails its transaction every time is put off, and at its fifth failure set aside as a dead letter (sagactl dead list); a cart behind it completed"

# The checks of a definition's children.
cat >"$work/loop.json" <<'JSON'
{"name": "loop", "steps": [{"name": "again", "child": "loop"}]}
JSON
cat >"$work/orphan.json" <<'JSON'
{"name": "orphan", "steps": [{"name": "ship", "child": "nowhere"}]}
JSON
out=$("$bin/sagactl" validate "$work/loop.json" 2>&1) && fail "a saga that starts itself validated"
[[ $out == *"steps[0].child: \"loop\" leads back to \"loop\" (loop -> loop)"* ]] || fail "validate loop: $out"
out=$("$bin/sagactl" validate sagas/cart.json 2>&1) && fail "cart without shipping validated"
[[ $out == *'sagas/cart.json: steps[3].child: no definition "shipping"'* ]] || fail "validate cart alone: $out"
"$bin/sagactl" validate sagas/cart.json sagas/shipping.json >/dev/null || fail "cart with shipping does not validate"
out=$("$bin/sagactl" defs deploy "$work/orphan.json" 2>&1) && fail "an orphan deployed"
[[ $out == *'steps[0].child: no definition "nowhere"'* ]] || fail "deploy orphan: $out"
code=$(curl -sS -o "$work/api.json" -w '%{http_code}' -X POST "$base/v1/definitions" \
    -H 'Content-Type: application/json' --data-binary @"$work/orphan.json")
[[ $code == 422 && $(cat "$work/api.json") == *'no definition \"nowhere\"'* ]] || fail "API: $code $(cat "$work/api.json")"
ok "a child that does not exist or leads back: refused by validate, defs deploy and the API, each saying where"
echo "test_children: passed"
