#!/usr/bin/env bash
# The operator console (docs/CONSOLE.md) in a real browser: Debian's
# headless chromium driven by Playwright (tests/console/console.mjs)
# against a real sagad with real sagas. Sagas stuck because the payment
# service was down appear on Needs attention; the timeline shows the
# failed step; an operator logs in with a token, retries one with a
# reason, the page shows it compensated and the history names the token;
# a bulk repair counts first. A reader sees no repair buttons, and its
# forged POST is 403; a POST without the CSRF token, or from another
# origin, is 403 too. Every page is loaded with its CSP and no console
# error, at a narrow width too, and used from the keyboard.
# SAGA_CONSOLE_SHOTS=DIR keeps a screenshot of each page there (make
# screenshots: docs/console/).
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init console
modules=$PWD/build/node_modules
[[ -d $modules/playwright-core ]] || fail "no $modules/playwright-core: run scripts/install-deps"
[[ -x /usr/bin/chromium ]] || fail "no /usr/bin/chromium: run scripts/install-deps"

it_services order payment inventory shipping
mkdir -p "$work/sagas"
cp sagas/order.json sagas/order_parallel.json sagas/cart.json sagas/shipping.json "$work/sagas/"
# credit: one step on the payment service, quick to give up
# (tests/integration/stuck_sagas).
cp tests/integration/stuck_sagas/credit.json "$work/sagas/"
it_sagad "$work/sagas"
ops=$("$bin/sagactl" tokens create --role operator --name oncall-alice 2>/dev/null)
reader=$("$bin/sagactl" tokens create --role reader --name support-bob 2>/dev/null)

post() { # path body: as the operator, with a bearer token
    curl -sS -f -X POST -H "Authorization: Bearer $ops" -H 'Content-Type: application/json' \
        --data-binary "$2" "$base$1"
}
status_of() { psql "$SAGA_PG_URL" -Atq -c "SELECT status FROM saga.saga WHERE id = '$1'"; }
wait_status() { # id status
    for _ in $(seq 1 300); do [[ $(status_of "$1") == "$2" ]] && return 0; sleep 0.1; done
    fail "saga $1 is $(status_of "$1"), not $2"
}
id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# A few that complete and one compensated (not enough stock), for the lists.
for i in 1 2 3; do
    post /v1/sagas "{\"definition\":\"order\",\"business_key\":\"order-10$i\",\"input\":{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,\"amount\":100}}" | id_of >>"$work/done"
done
post /v1/sagas '{"definition":"order_parallel","business_key":"order-200","input":{"customer_id":"alice","sku":"gadget","quantity":5,"amount":700}}' | id_of >>"$work/done"
# A cart: its lines fanned out, its shipping a child saga.
cart=$(post /v1/sagas '{"definition":"cart","business_key":"cart-300","input":{"customer_id":"alice","amount":30,"parcels":1,"lines":[{"sku":"widget","quantity":1},{"sku":"widget","quantity":1},{"sku":"widget","quantity":1}]}}' | id_of)
echo "$cart" >>"$work/done"
while read -r id; do
    for _ in $(seq 1 300); do [[ $(status_of "$id") =~ ^(completed|compensated)$ ]] && break; sleep 0.1; done
done <"$work/done"

# The payment service goes down: two sagas get stuck.
kill -TERM "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
stuck=$(post /v1/sagas '{"definition":"credit","business_key":"credit-4711","input":{"customer_id":"alice","amount":5,"order_id":"o-4711"}}' | id_of)
other=$(post /v1/sagas '{"definition":"credit","business_key":"credit-4712","input":{"customer_id":"bob","amount":7,"order_id":"o-4712"}}' | id_of)
wait_status "$stuck" failed
wait_status "$other" failed
# A second version of credit, for the definitions' diff.
sed 's/"timeout": "1s"/"timeout": "2s"/' "$work/sagas/credit.json" >"$work/credit2.json"
post /v1/definitions "@$work/credit2.json" >/dev/null
ok "two sagas stuck (failed) while the payment service was down; credit has two versions"

# The service is back; now the operator opens the console.
"$bin/payment-service" >>"$work/payment.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do [[ $(grep -c ready "$work/payment.log") -ge 2 ]] && break; sleep 0.1; done

started=$(date +%s%N)
BASE=$base OPS_TOKEN=$ops READER_TOKEN=$reader STUCK=$stuck OTHER=$other CART=$cart \
    SHOTS=${SAGA_CONSOLE_SHOTS:-$work/shots} PROFILE=$work/profile NODE_PATH=$modules \
    node tests/console/console.mjs || fail "the browser test failed (above)"
ms=$((($(date +%s%N) - started) / 1000000))

# What the browser did is in the database too.
[[ $(status_of "$stuck") == compensated ]] || fail "the retried saga is $(status_of "$stuck")"
[[ $(status_of "$other") == compensated ]] || fail "the bulk-repaired saga is $(status_of "$other")"
n=$(psql "$SAGA_PG_URL" -Atq -c "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$stuck'
    AND kind = 'operator_retry' AND actor = 'token:oncall-alice'
    AND detail->>'reason' = 'payment is back (INC-7)'")
[[ $n == 1 ]] || fail "the history has $n operator_retry lines by token:oncall-alice"
n=$(psql "$SAGA_PG_URL" -Atq -c "SELECT count(*) FROM saga.saga_event WHERE kind LIKE 'operator_%'
    AND actor LIKE '%bob%'")
[[ $n == 0 ]] || fail "the reader repaired something"
ok "the browser session took ${ms} ms; the database agrees: retried by token:oncall-alice with its reason, the reader changed nothing"
