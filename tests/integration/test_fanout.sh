#!/usr/bin/env bash
# Fan-out ("for_each", docs/DEFINITIONS.md) on a real sagad, PostgreSQL
# and Kafka with the example services: a cart of 1,000 lines reserves each
# line on its own (one version 2 command per line, four at a time) and
# completes with a reservation row per line; a cart of 1,000 lines whose
# line 700 names an unknown product compensates exactly the lines that
# were reserved (each released once, the stock back where it was) and no
# other, then the credit and the order; a list longer than max_elements
# fails the step with why, before any line is sent.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init fanout
it_services order payment inventory shipping
mkdir -p "$work/sagas"
cp sagas/cart.json sagas/shipping.json "$work/sagas/"
it_sagad "$work/sagas"
q() { psql "$SAGA_PG_URL" -Atq -c "$1"; }
q "INSERT INTO inventory.stock (sku, available) VALUES ('bolt', 5000), ('nut', 5000)
   ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available"
cart() { # N BAD_LINE: N lines of one bolt or nut, BAD_LINE (or -1) an unknown product
    python3 -c '
import json, sys
n, bad = int(sys.argv[1]), int(sys.argv[2])
lines = [{"sku": "nope" if i == bad else ("bolt" if i % 2 else "nut"), "quantity": 1}
         for i in range(n)]
print(json.dumps({"customer_id": "alice", "amount": 100, "parcels": 3, "lines": lines}))' "$1" "$2"
}
stock() { q "SELECT sum(available) FROM inventory.stock WHERE sku IN ('bolt', 'nut')"; }
reserved() { q "SELECT reserved FROM payment.customers WHERE id = 'alice'"; }
events() { q "SELECT string_agg(kind, ' ' ORDER BY id) FROM saga.saga_event WHERE saga_id = '$1'" | tr ' ' '\n' | sort | uniq -c | tr '\n' ' '; }

stock0=$(stock)
cart 1000 -1 >"$work/ok.json"
t0=$(date +%s.%N)
id=$("$bin/sagactl" start cart --input "$(cat "$work/ok.json")")
out=$("$bin/sagactl" wait "$id" --timeout 300s) || true
t1=$(date +%s.%N)
[[ $out == *completed* ]] || fail "the 1,000-line cart: $out; $(events "$id")"
rows=$(q "SELECT count(*) FROM inventory.line_reservations WHERE saga_id = '$id' AND status = 'reserved'")
[[ $rows == 1000 ]] || fail "$rows reservation rows, not 1000"
[[ $(q "SELECT count(DISTINCT line) FROM inventory.line_reservations WHERE saga_id = '$id'") == 1000 ]] ||
    fail "lines reserved twice or missed"
[[ $(stock) == $((stock0 - 1000)) ]] || fail "stock $stock0 -> $(stock), not -1000"
[[ $(q "SELECT count(*) FROM saga.saga_element WHERE saga_id = '$id' AND status = 'succeeded'") == 1000 ]] ||
    fail "elements: $(q "SELECT status, count(*) FROM saga.saga_element WHERE saga_id = '$id' GROUP BY 1")"
[[ $(q "SELECT jsonb_array_length(output) FROM saga.saga_step WHERE saga_id = '$id' AND name = 'reserve_lines'") == 1000 ]] ||
    fail "the step's output is not the list of 1000 outputs"
# Every element's command went out as version 2 with its index (the
# participant's barrier keeps one row per element).
[[ $(q "SELECT count(*) FROM inventory.saga_barrier WHERE saga_id = '$id' AND step = 2 AND phase = 'invoke'") == 1000 ]] ||
    fail "barrier rows: $(q "SELECT count(*) FROM inventory.saga_barrier WHERE saga_id = '$id'")"
shown=$("$bin/sagactl" show "$id")
[[ $shown == *"reserve_lines"*"succeeded"*"1000 elements: 1000 succeeded"* ]] || fail "sagactl show: $shown"
ok "a cart of 1,000 lines: each line reserved once on its own, output the list of 1000 ($(python3 -c "print(f'{$t1 - $t0:.1f}')") s)"

stock1=$(stock)
credit0=$(reserved)
cart 1000 700 >"$work/bad.json"
id=$("$bin/sagactl" start cart --input "$(cat "$work/bad.json")")
out=$("$bin/sagactl" wait "$id" --timeout 300s) || true
[[ $out == *compensated* ]] || fail "the cart with a bad line: $out; $(events "$id")"
[[ $(stock) == "$stock1" ]] || fail "stock $stock1 -> $(stock): not every reserved line was released"
[[ $(reserved) == "$credit0" ]] || fail "credit $credit0 -> $(reserved)"
made=$(q "SELECT count(*) FROM inventory.line_reservations WHERE saga_id = '$id'")
still=$(q "SELECT count(*) FROM inventory.line_reservations WHERE saga_id = '$id' AND status = 'reserved'")
[[ $still == 0 && $made -ge 700 ]] || fail "$made lines reserved, $still still reserved"
# Compensations went to exactly the elements that succeeded or may have:
# never to the failed line nor to a line never sent.
bad=$(q "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'compensation_dispatched'
         AND (detail->>'element')::int IN (SELECT idx FROM saga.saga_element WHERE saga_id = '$id' AND status IN ('failed', 'pending'))")
[[ $bad == 0 ]] || fail "$bad compensations sent to elements that never acted"
undone=$(q "SELECT count(*) FROM saga.saga_element WHERE saga_id = '$id' AND status = 'compensated'")
[[ $undone -ge $made ]] || fail "$undone elements compensated, $made reserved"
[[ $(q "SELECT status FROM saga.saga_element WHERE saga_id = '$id' AND idx = 700") == failed ]] ||
    fail "line 700 is $(q "SELECT status FROM saga.saga_element WHERE saga_id = '$id' AND idx = 700")"
[[ $(q "SELECT count(*) FROM saga.saga_element WHERE saga_id = '$id' AND status NOT IN ('compensated', 'failed', 'pending')") == 0 ]] ||
    fail "elements left: $(q "SELECT status, count(*) FROM saga.saga_element WHERE saga_id = '$id' GROUP BY 1")"
# Each element undone once (a timed-out release is sent again: the same
# command, which the barrier answers once).
[[ $(q "SELECT count(DISTINCT detail->>'element') FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'compensation_dispatched' AND step = 2") == "$undone" &&
    $(q "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'step_compensated' AND step = 2 AND detail ? 'element'") == "$undone" ]] ||
    fail "release commands and elements undone differ: $(events "$id")"
ok "a cart of 1,000 lines, line 700 unknown: the $made reserved lines released ($undone elements undone: those in flight too), none else; stock and credit back"

cart 1001 -1 >"$work/big.json"
id=$("$bin/sagactl" start cart --input "$(cat "$work/big.json")")
out=$("$bin/sagactl" wait "$id" --timeout 120s) || true
[[ $out == *compensated* ]] || fail "1,001 lines: $out"
err=$(q "SELECT error->>'message' FROM saga.saga_step WHERE saga_id = '$id' AND name = 'reserve_lines'")
[[ $err == *"has 1001 elements; this step takes at most 1000"* ]] || fail "1,001 lines: $err"
[[ $(q "SELECT count(*) FROM inventory.line_reservations WHERE saga_id = '$id'") == 0 ]] || fail "lines reserved"
ok "1,001 lines, max_elements 1000: the step failed with why before sending any line; compensated"
echo "test_fanout: passed"
