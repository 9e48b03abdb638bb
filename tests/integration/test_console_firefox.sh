#!/usr/bin/env bash
# The operator console (docs/CONSOLE.md) in Firefox: Debian's headless
# firefox-esr driven over WebDriver BiDi by puppeteer-core
# (tests/console/console_firefox.mjs) against a real sagad with a real
# stuck saga. A shorter pass than test_console.sh's in Chromium: log in
# with an operator token, Needs attention lists the stuck saga, its
# timeline and failed step, a retry with a reason that the page follows
# to compensated and the history names the token, a definition drawn, a
# 380 px window without sideways scrolling, a reader without repair
# buttons; no console error, CSP violation or outside fetch, and Firefox
# itself reaches nothing but this machine.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init console_firefox
modules=$PWD/build/node_modules
[[ -d $modules/puppeteer-core ]] || fail "no $modules/puppeteer-core: run scripts/install-deps"
[[ -x /usr/bin/firefox-esr ]] || fail "no /usr/bin/firefox-esr: run scripts/install-deps"

it_services payment inventory # inventory: examples/seed.sql fills its tables too
mkdir -p "$work/sagas"
cp sagas/order_parallel.json "$work/sagas/"
# credit: one step on the payment service, quick to give up
# (tests/integration/stuck_sagas).
cp tests/integration/stuck_sagas/credit.json "$work/sagas/"
it_sagad "$work/sagas"
ops=$("$bin/sagactl" tokens create --role operator --name oncall-alice 2>/dev/null)
reader=$("$bin/sagactl" tokens create --role reader --name support-bob 2>/dev/null)
status_of() { psql "$SAGA_PG_URL" -Atq -c "SELECT status FROM saga.saga WHERE id = '$1'"; }

# The payment service goes down: the saga gets stuck.
kill -TERM "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
stuck=$(curl -sS -f -X POST -H "Authorization: Bearer $ops" -H 'Content-Type: application/json' \
    --data-binary '{"definition":"credit","business_key":"credit-4711","input":{"customer_id":"alice","amount":5,"order_id":"o-4711"}}' \
    "$base/v1/sagas" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 300); do [[ $(status_of "$stuck") == failed ]] && break; sleep 0.1; done
[[ $(status_of "$stuck") == failed ]] || fail "saga $stuck is $(status_of "$stuck"), not failed"
ok "a saga stuck (failed) while the payment service was down"

# The service is back; now the operator opens the console in Firefox.
"$bin/payment-service" >>"$work/payment.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do [[ $(grep -c ready "$work/payment.log") -ge 2 ]] && break; sleep 0.1; done

started=$(date +%s%N)
BASE=$base OPS_TOKEN=$ops READER_TOKEN=$reader STUCK=$stuck \
    SHOTS=${SAGA_CONSOLE_SHOTS:-$work/shots} PROFILE=$work/profile NODE_PATH=$modules \
    node tests/console/console_firefox.mjs || fail "the browser test failed (above; screenshots in $work/shots)"
ms=$((($(date +%s%N) - started) / 1000000))

# What the browser did is in the database too.
[[ $(status_of "$stuck") == compensated ]] || fail "the retried saga is $(status_of "$stuck")"
n=$(psql "$SAGA_PG_URL" -Atq -c "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$stuck'
    AND kind = 'operator_retry' AND actor = 'token:oncall-alice'
    AND detail->>'reason' = 'payment is back (INC-7)'")
[[ $n == 1 ]] || fail "the history has $n operator_retry lines by token:oncall-alice"
n=$(psql "$SAGA_PG_URL" -Atq -c "SELECT count(*) FROM saga.saga_event WHERE kind LIKE 'operator_%'
    AND actor LIKE '%bob%'")
[[ $n == 0 ]] || fail "the reader repaired something"
ok "the Firefox session took ${ms} ms; the database agrees: retried by token:oncall-alice with its reason, the reader changed nothing"
