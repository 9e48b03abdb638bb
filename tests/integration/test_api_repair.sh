#!/usr/bin/env bash
# The HTTP API's repairs and business keys (docs/API.md) against a real
# sagad: sagas started with a business key and found by it (the API and
# sagactl list --key / show); sagas stuck (failed) because their service
# was down, repaired one by one and then all at once (a dry run first)
# with an operator token, the history naming the token; a reader and a
# starter refused (403), a repair the machine refuses is 409 with why,
# bad bodies 400/415/422 saying where; nobody but sagad may write history
# in a token's name; sagactl retry --all does the same from a terminal.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init api_repair
forger=it_forger_$$
it_atexit() { psql "$admin" -q -c "DROP ROLE IF EXISTS $forger" >/dev/null 2>&1; }
# A restarted service first works off what was sent while it was down
# (each stuck saga's action and compensation): a retry sent behind that
# backlog would wait past its one-second timeout on a busy machine, where
# tests run side by side. Wait until it has (ids: the stuck sagas).
backlog() { # service compensation
    for id in "${ids[@]}"; do
        for _ in $(seq 1 600); do grep -q "compensate $2 saga=$id" "$work/$1.log" && break; sleep 0.1; done
    done
}
start_svc() { # name: (re)start it, its pid in <name>_pid
    local n
    n=$(grep -c ready "$work/$1.log" 2>/dev/null || true)
    "$bin/$1-service" >>"$work/$1.log" 2>&1 &
    printf -v "$1_pid" %s $!
    pids+=($!)
    for _ in $(seq 1 600); do [[ $(grep -c ready "$work/$1.log") -gt $n ]] && return; sleep 0.1; done
    fail "$1-service did not start"
}
stop_svc() { # name
    local pid_var=$1_pid
    kill -TERM "${!pid_var}"
    wait "${!pid_var}" 2>/dev/null || true
    printf -v "$1_pid" %s ""
}
"$bin/order-service" >"$work/order.log" 2>&1 &
pids+=($!)
start_svc payment
start_svc inventory
for _ in $(seq 1 600); do grep -q ready "$work/order.log" && break; sleep 0.1; done
psql "$SAGA_PG_URL" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
# One step on the payment service (credit), or the inventory service
# (stock), quick to give up: with the service down, the step times out,
# its compensation too, and the saga is failed (stuck) within a few
# seconds (1 s each: once the service is back, a retried compensation
# has time to be answered on a busy machine, where tests run side by side).
mkdir -p "$work/sagas"
cp sagas/order.json tests/integration/stuck_sagas/credit.json tests/integration/stuck_sagas/stock.json "$work/sagas/"
it_sagad "$work/sagas"

req() {
    local method=$1 path=$2 body=${3-} args=()
    shift 3 || shift $#
    for h in "$@"; do args+=(-H "$h"); done
    if [[ -n $body ]]; then args+=(--data-binary "$body"); fi
    status=$(curl -sS -o "$work/b" -D "$work/h" -w '%{http_code}' -X "$method" "${args[@]}" "$base$path")
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$work/b" "$1"; }
header() { grep -i "^$1:" "$work/h" | head -n 1 | sed 's/^[^:]*: *//' | tr -d '\r'; }
problem() { # status code [pointer]
    [[ $status == "$1" ]] || fail "expected $1, got $status: $(cat "$work/b")"
    [[ $(header content-type) == application/problem+json ]] || fail "$1 is not a problem document"
    [[ $(field "['code']") == "$2" ]] || fail "expected code $2: $(cat "$work/b")"
    if [[ -n ${3-} ]]; then
        grep -q "\"$3\"" "$work/b" || fail "the problem does not say where ($3): $(cat "$work/b")"
    fi
}
json='Content-Type: application/json'
ops=$("$bin/sagactl" tokens create --role operator --name ops 2>/dev/null)
reader=$("$bin/sagactl" tokens create --role reader --name dashboard 2>/dev/null)
starter=$("$bin/sagactl" tokens create --role starter --name shop 2>/dev/null)
as_ops="Authorization: Bearer $ops"
as_reader="Authorization: Bearer $reader"
as_starter="Authorization: Bearer $starter"
status_of() { psql "$SAGA_PG_URL" -Atq -c "SELECT status FROM saga.saga WHERE id = '$1'"; }
wait_status() { # id status...
    local id=$1 s
    shift
    for _ in $(seq 1 300); do
        s=$(status_of "$id")
        for want in "$@"; do [[ $s == "$want" ]] && return 0; done
        sleep 0.1
    done
    fail "saga $id is $s, not $*"
}

# ---- business keys
req POST /v1/sagas '{"definition":"order","business_key":"order-4711","input":{"customer_id":"alice","sku":"widget","quantity":1,"amount":10}}' \
    "$json" "$as_starter"
[[ $status == 201 && $(field "['business_key']") == order-4711 ]] || fail "start with a key: $status $(cat "$work/b")"
keyed=$(field "['id']")
req POST /v1/sagas '{"definition":"order","input":{"customer_id":"alice","sku":"widget","quantity":1,"amount":10}}' "$json" "$as_starter"
[[ $status == 201 ]] || fail "start without a key: $status"
wait_status "$keyed" completed
req GET "/v1/sagas?business_key=order-4711" "" "$as_reader"
[[ $status == 200 ]] || fail "search by key: $status $(cat "$work/b")"
python3 - "$work/b" "$keyed" <<'PY' || fail "search by business key: $(cat "$work/b")"
import json, sys
page = json.load(open(sys.argv[1]))
assert [s["id"] for s in page["sagas"]] == [sys.argv[2]], page
assert page["sagas"][0]["business_key"] == "order-4711"
PY
req GET "/v1/sagas/$keyed" "" "$as_reader"
[[ $(field "['business_key']") == order-4711 ]] || fail "GET saga: no business key: $(cat "$work/b")"
for bad in '""' '12' "\"$(printf 'k%.0s' $(seq 1 201))\""; do
    req POST /v1/sagas "{\"definition\":\"order\",\"business_key\":$bad,\"input\":{}}" "$json" "$as_starter"
    problem 422 invalid_field /business_key
done
"$bin/sagactl" list --key order-4711 >"$work/list.txt"
grep -q "$keyed.*order-4711" "$work/list.txt" && [[ $(grep -c completed "$work/list.txt") == 1 ]] ||
    fail "sagactl list --key: $(cat "$work/list.txt")"
"$bin/sagactl" show "$keyed" | grep -q "^business  order-4711" || fail "sagactl show: no business key"
ok "business keys: given at start, in GET and the search (?business_key=), sagactl list --key and show; a bad one is 422 at /business_key"

# ---- stuck sagas: the payment service is down
stop_svc payment
ids=()
for i in 1 2 3 4; do
    req POST /v1/sagas "{\"definition\":\"credit\",\"business_key\":\"credit-$i\",\"input\":{\"customer_id\":\"alice\",\"amount\":5,\"order_id\":\"o-$i\"}}" \
        "$json" "$as_ops"
    [[ $status == 201 ]] || fail "start credit $i: $status $(cat "$work/b")"
    ids+=("$(field "['id']")")
done
for id in "${ids[@]}"; do wait_status "$id" failed; done
ok "4 sagas stuck (failed): their service was down"

# ---- who may repair
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":"payment is back"}' "$json" "$as_reader"; problem 403 forbidden
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":"payment is back"}' "$json" "$as_starter"; problem 403 forbidden
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":"payment is back"}' "$json"; problem 401 unauthorized
req POST /v1/repairs '{"action":"retry","reason":"x","filter":{"status":"failed"}}' "$json" "$as_reader"; problem 403 forbidden
req POST /v1/definitions '{"name":"x","steps":[{"name":"a","service":"s","action":"a"}]}' "$json" "$as_reader"; problem 403 forbidden
req POST /v1/definitions '{"name":"x","steps":[{"name":"a","service":"s","action":"a"}]}' "$json" "$as_starter"; problem 403 forbidden
# bad requests, each saying where
req POST "/v1/sagas/${ids[0]}/retry" '{}' "$json" "$as_ops"; problem 422 missing_field /reason
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":""}' "$json" "$as_ops"; problem 422 invalid_field /reason
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":"x","step":"a"}' "$json" "$as_ops"; problem 422 unknown_field /step
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":' "$json" "$as_ops"; problem 400 malformed_json
req POST "/v1/sagas/${ids[0]}/retry" 'reason=x' "Content-Type: text/plain" "$as_ops"; problem 415 unsupported_media_type
req POST "/v1/sagas/${ids[0]}/skip" '{"reason":"x"}' "$json" "$as_ops"; problem 422 missing_field /step
req POST "/v1/sagas/${ids[0]}/rewind" '{"reason":"x"}' "$json" "$as_ops"; problem 404 not_found
req GET "/v1/sagas/${ids[0]}/retry" "" "$as_ops"; problem 405 method_not_allowed
req POST /v1/sagas/00000000-0000-4000-8000-000000000000/retry '{"reason":"x"}' "$json" "$as_ops"; problem 404 not_found
# the machine refuses: a completed saga cannot be resolved
req POST "/v1/sagas/$keyed/resolve" '{"reason":"tidy up"}' "$json" "$as_ops"; problem 409 refused
grep -q "only a failed saga can be resolved" "$work/b" || fail "409 does not say why: $(cat "$work/b")"
ok "repairs (and deploying): reader and starter 403, no token 401; missing/empty reason, a field of skip, bad JSON, bad type, unknown action or saga each refused saying where; a refused repair is 409 with the machine's reason"

# ---- the service is back: repair one, then all the others
start_svc payment
backlog payment release_credit
req POST "/v1/sagas/${ids[0]}/retry" '{"reason":"payment is back (INC-7)","on_behalf_of":"support ticket 99"}' "$json" "$as_ops"
[[ $status == 200 && $(field "['id']") == "${ids[0]}" && $(field "['commands_sent']") == 1 ]] ||
    fail "retry: $status $(cat "$work/b")"
wait_status "${ids[0]}" compensated
req GET "/v1/sagas/${ids[0]}/history" "" "$as_reader"
python3 - "$work/b" <<'PY' || fail "the history does not name the token: $(cat "$work/b")"
import json, sys
events = json.load(open(sys.argv[1]))
op = [e for e in events if e["kind"] == "operator_retry"]
assert len(op) == 1, events
assert op[0]["actor"] == "token:ops", op[0]
assert op[0]["detail"]["operator"] == "token:ops", op[0]
assert op[0]["detail"]["reason"] == "payment is back (INC-7)", op[0]
assert op[0]["detail"]["on_behalf_of"] == "support ticket 99", op[0]
PY
"$bin/sagactl" history "${ids[0]}" | grep -q "token:ops" || fail "sagactl history does not show token:ops"
ok "POST /v1/sagas/{id}/retry: the stuck saga compensated; its history names token:ops, the reason and on whose behalf"

req POST /v1/repairs '{"action":"retry","dry_run":true,"filter":{"definition":"credit","status":"failed","step":"reserve_credit"}}' "$json" "$as_ops"
[[ $status == 200 && $(field "['matched']") == 3 && $(field "['dry_run']") == True ]] || fail "dry run: $status $(cat "$work/b")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert sorted(d["sample"]) == sorted(sys.argv[2:]), d' "$work/b" "${ids[@]:1}" ||
    fail "dry run sample: $(cat "$work/b")"
for id in "${ids[@]:1}"; do [[ $(status_of "$id") == failed ]] || fail "the dry run touched $id"; done
req POST /v1/repairs '{"action":"retry","reason":"x"}' "$json" "$as_ops"; problem 422 missing_field /filter
req POST /v1/repairs '{"action":"skip","reason":"x","filter":{"status":"failed"}}' "$json" "$as_ops"; problem 422 invalid_field /action
req POST /v1/repairs '{"action":"retry","reason":"x","filter":{"status":"stuck"}}' "$json" "$as_ops"; problem 422 invalid_field /filter/status
req POST /v1/repairs '{"action":"retry","reason":"x","filter":{"since":"yesterday"}}' "$json" "$as_ops"; problem 422 invalid_field /filter/since
req POST /v1/repairs '{"action":"retry","reason":"x","filter":{"colour":"red"}}' "$json" "$as_ops"; problem 422 unknown_field /filter/colour
req POST /v1/repairs '{"action":"retry","reason":"x","limit":0,"filter":{"status":"failed"}}' "$json" "$as_ops"; problem 422 invalid_field /limit
req POST /v1/repairs '{"action":"retry","filter":{"status":"failed"}}' "$json" "$as_ops"; problem 422 missing_field /reason
req POST /v1/repairs '{"action":"retry","reason":"payment is back (INC-7)","limit":2,"filter":{"definition":"credit","status":"failed","since":"1h"}}' "$json" "$as_ops"
[[ $status == 200 && $(field "['repaired']") == 2 && $(field "['more']") == True ]] || fail "bulk retry (limit 2): $status $(cat "$work/b")"
req POST /v1/repairs '{"action":"retry","reason":"payment is back (INC-7)","filter":{"definition":"credit","status":"failed"}}' "$json" "$as_ops"
[[ $status == 200 && $(field "['repaired']") == 1 && $(field "['more']") == False && $(field "['refused']") == "[]" ]] ||
    fail "bulk retry (the rest): $status $(cat "$work/b")"
for id in "${ids[@]}"; do wait_status "$id" compensated; done
n=$(psql "$SAGA_PG_URL" -Atq -c "SELECT count(*) FROM saga.saga_event WHERE kind = 'operator_retry' AND actor = 'token:ops'")
[[ $n == 4 ]] || fail "$n operator_retry lines by token:ops, not 4"
ok "POST /v1/repairs: a dry run counted 3 (and touched nothing), then all 3 retried in two calls (limit 2, more: true), each compensated, each history line token:ops"

# ---- sagactl retry --all (another service: payment's circuit breaker
# is still wary after its outage)
stop_svc inventory
ids=()
for i in 5 6; do
    req POST /v1/sagas '{"definition":"stock","input":{"sku":"widget","quantity":1,"order_id":"s-1"}}' "$json" "$as_ops"
    ids+=("$(field "['id']")")
done
for id in "${ids[@]}"; do wait_status "$id" failed; done
"$bin/sagactl" retry --all --definition stock --status failed --dry-run >"$work/dry.txt"
grep -q "2 sagas match" "$work/dry.txt" || fail "sagactl retry --all --dry-run: $(cat "$work/dry.txt")"
set +e
"$bin/sagactl" retry --all --reason x >"$work/nofilter.txt" 2>&1; rc=$?
set -e
[[ $rc == 2 ]] && grep -q "give at least one filter" "$work/nofilter.txt" || fail "retry --all without a filter: $rc $(cat "$work/nofilter.txt")"
start_svc inventory
backlog inventory release_stock
"$bin/sagactl" retry --all --definition stock --status failed --at-step reserve_stock --reason "inventory is back" >"$work/all.txt"
grep -q "retry --all: 2 sagas repaired, 0 refused, of 2 met" "$work/all.txt" || fail "sagactl retry --all: $(cat "$work/all.txt")"
for id in "${ids[@]}"; do wait_status "$id" compensated; done
ok "sagactl retry --all: a dry run counted 2, no filter is refused (exit 2), then both retried and compensated"

# ---- nobody else writes history in a token's name
psql "$admin" -q -c "CREATE ROLE $forger LOGIN" >/dev/null
"$bin/sagactl" roles create >/dev/null
psql "$SAGA_PG_URL" -q -c "GRANT saga_operator TO $forger" >/dev/null
set +e
psql "postgresql://$forger@$hostport/$db" -q -v ON_ERROR_STOP=1 -c \
    "INSERT INTO saga.saga_event (saga_id, at, kind, actor, detail) VALUES ('${ids[0]}', now(), 'operator_retry', 'token:ops', '{}')" \
    >"$work/forge.txt" 2>&1
rc=$?
set -e
[[ $rc != 0 ]] && grep -q "may not write history in the name of token:ops" "$work/forge.txt" ||
    fail "an operator role wrote history as token:ops: $(cat "$work/forge.txt")"
set +e
psql "$SAGA_PG_URL" -q -v ON_ERROR_STOP=1 -c \
    "INSERT INTO saga.saga_event (saga_id, at, kind, actor, detail) VALUES ('${ids[0]}', now(), 'operator_retry', 'token:nobody', '{}')" \
    >"$work/forge.txt" 2>&1
rc=$?
set -e
[[ $rc != 0 ]] && grep -q "no such live operator token" "$work/forge.txt" || fail "history in the name of a token that does not exist: $(cat "$work/forge.txt")"
ok "history in a token's name: refused to an operator's database role, and for a name that is no live operator token"
echo "test_api_repair: passed"
