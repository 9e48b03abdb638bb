#!/usr/bin/env bash
# The HTTP API's first resources (docs/API.md) against a real sagad, with
# nothing but HTTP: start a saga (201, then 200 for the same
# Idempotency-Key, with Location), follow it to its end (GET
# /v1/sagas/{id}), a caller's traceparent kept, search with keyset
# pagination (every saga once, newest first), and every error as a problem
# document with its status and where: 400 malformed JSON and bad
# parameters, 404, 405, 413, 415, 422 unknown definition, field or input.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init api
it_services
it_sagad sagas
grep -q "and the API (/v1: a bearer token once tokens exist, none before: loopback)" "$work/sagad.log" ||
    fail "sagad does not say it serves the API"

# req METHOD PATH [BODY [HEADER...]]: status in $status, headers in
# $work/h, body in $work/b.
req() {
    local method=$1 path=$2 body=${3-} args=()
    shift 3 || shift $#
    for h in "$@"; do args+=(-H "$h"); done
    if [[ -n $body ]]; then args+=(--data-binary "$body"); fi
    status=$(curl -sS -o "$work/b" -D "$work/h" -w '%{http_code}' -X "$method" "${args[@]}" "$base$path")
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$work/b" "$1"; }
header() { grep -i "^$1:" "$work/h" | head -n 1 | sed 's/^[^:]*: *//' | tr -d '\r'; }
problem() { # status code [pointer|parameter]
    [[ $status == "$1" ]] || fail "expected $1, got $status: $(cat "$work/b")"
    [[ $(header content-type) == application/problem+json ]] || fail "$1 is not a problem document: $(header content-type)"
    [[ $(field "['code']") == "$2" ]] || fail "expected code $2: $(cat "$work/b")"
    [[ $(field "['status']") == "$1" ]] || fail "status field: $(cat "$work/b")"
    if [[ -n ${3-} ]]; then
        grep -q "\"$3\"" "$work/b" || fail "the problem does not say where ($3): $(cat "$work/b")"
    fi
}
json='Content-Type: application/json'

# ---- start, idempotently, with the caller's trace
tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
req POST /v1/sagas '{"definition":"order","input":{"customer_id":"alice","sku":"widget","quantity":1,"amount":100}}' \
    "$json" "Idempotency-Key: order-4711" "traceparent: $tp"
[[ $status == 201 ]] || fail "start: $status $(cat "$work/b")"
id=$(field "['id']")
[[ $(header location) == "/v1/sagas/$id" ]] || fail "Location: $(header location)"
req POST /v1/sagas '{"definition":"order","input":{"customer_id":"alice","sku":"widget","quantity":1,"amount":100}}' \
    "$json" "Idempotency-Key: order-4711"
[[ $status == 200 && $(field "['id']") == "$id" ]] || fail "the same key gave $status $(cat "$work/b")"
ok "POST /v1/sagas: 201 with Location, then 200 and the same saga for the same Idempotency-Key"

# ---- follow it to its end
for _ in $(seq 1 300); do
    req GET "/v1/sagas/$id"
    [[ $status == 200 ]] || fail "GET saga: $status $(cat "$work/b")"
    [[ $(field "['status']") == completed ]] && break
    sleep 0.1
done
[[ $(field "['status']") == completed ]] || fail "the saga did not complete: $(cat "$work/b")"
[[ $(field "['trace_id']") == 4bf92f3577b34da6a3ce929d0e0e4736 ]] || fail "the caller's trace was not kept: $(field "['trace_id']")"
[[ $(field "['steps'][3]['status']") == succeeded && $(field "['steps'][1]['output']['amount']") == 100 ]] ||
    fail "steps: $(cat "$work/b")"
ok "GET /v1/sagas/{id}: the saga completed, its steps with outputs, the caller's trace id"

# ---- its history, as sagactl history --json gives it
req GET "/v1/sagas/$id/history"
[[ $status == 200 ]] || fail "history: $status $(cat "$work/b")"
"$bin/sagactl" history "$id" --json >"$work/cli.json"
python3 - "$work/b" "$work/cli.json" <<'PY' || fail "the API's history differs from sagactl's"
import json, sys
api, cli = (json.load(open(f)) for f in sys.argv[1:3])
assert api == cli, (api, cli)
assert api[0]["kind"] == "saga_started" and api[-1]["kind"] == "saga_completed"
assert all(e["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" for e in api)
PY
req GET /v1/sagas/00000000-0000-4000-8000-000000000000/history; problem 404 not_found
ok "GET /v1/sagas/{id}/history: the timeline, the same as sagactl history --json"

# ---- definitions
req GET /v1/definitions
[[ $status == 200 ]] && python3 -c 'import json,sys; d={x["name"]: x for x in json.load(open(sys.argv[1]))}; assert d["order"]["latest"] == 1 and d["order"]["versions"] == 1' "$work/b" ||
    fail "definitions: $(cat "$work/b")"
req GET /v1/definitions/order
[[ $status == 200 && $(field "['version']") == 1 && $(field "['definition']['steps'][1]['service']") == payment ]] ||
    fail "definition order: $(cat "$work/b")"
req GET /v1/definitions/order/versions/1
[[ $status == 200 && $(field "['versions']") == "[1]" ]] || fail "order version 1: $(cat "$work/b")"
req GET /v1/definitions/order/versions/2; problem 404 not_found
req GET /v1/definitions/nothing; problem 404 not_found
req PUT /v1/definitions '{}' "$json"; problem 405 method_not_allowed
req POST /v1/definitions/order '{}' "$json"; problem 405 method_not_allowed
ok "GET /v1/definitions, /v1/definitions/{name}, .../versions/{v}"

# ---- deploy: validated exactly as sagactl validate does
bad='{"name":"refund","steps":[{"name":"a","service":"s","action":"a","retry":{"max_attempts":0}},{"name":"a"}]}'
req POST /v1/definitions "$bad" "$json"; problem 422 invalid_definition
printf '%s' "$bad" >"$work/bad.json"
"$bin/sagactl" validate --json "$work/bad.json" >"$work/validate.json" || true
python3 - "$work/b" "$work/validate.json" <<'PY' || fail "the API's problems differ from sagactl validate's: $(cat "$work/b")"
import json, sys
api, cli = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))[0]
assert [(e["where"], e["message"]) for e in api["errors"]] == \
       [(p["where"], p["message"]) for p in cli["problems"]], (api, cli)
ptrs = [e["pointer"] for e in api["errors"]]
assert ptrs[:4] == ["/steps/0/retry/max_attempts", "/steps/1/service", "/steps/1/action", "/steps/1"], ptrs
PY
req POST /v1/definitions '{"name":"refund","steps":' "$json"; problem 400 malformed_json
req POST /v1/definitions '[1]' "$json"; problem 400 malformed_json
req POST /v1/definitions 'name: refund' "Content-Type: text/yaml"; problem 415 unsupported_media_type
good='{"name":"refund","steps":[{"name":"refund_payment","service":"payment","action":"refund","compensation":null}]}'
req POST /v1/definitions "$good" "$json"
[[ $status == 201 && $(field "['version']") == 1 && $(field "['created']") == True &&
   $(header location) == /v1/definitions/refund/versions/1 ]] || fail "deploy: $status $(cat "$work/b")"
req POST /v1/definitions "$good" "$json"
[[ $status == 200 && $(field "['version']") == 1 && $(field "['created']") == False ]] || fail "deploy again: $status $(cat "$work/b")"
req POST /v1/definitions "${good/refund_payment/refund_card}" "$json"
[[ $status == 201 && $(field "['version']") == 2 && $(field "['versions']") == "[1, 2]" ]] || fail "deploy changed: $status $(cat "$work/b")"
"$bin/sagactl" defs list | grep -q "^refund .*2" || fail "sagactl defs list does not show refund version 2: $("$bin/sagactl" defs list)"
# Numbers PostgreSQL prints with all their digits (1e300) come back whole:
# in a definition, and in a saga's input that sagad reads back to start it.
req POST /v1/definitions '{"name":"huge","steps":[{"name":"a","service":"payment","action":"a","compensation":null,"input":{"x":-1.7976931348623155e+308}}]}' "$json"
[[ $status == 201 ]] || fail "deploy with a huge number: $status $(cat "$work/b")"
req GET /v1/definitions/huge
[[ $status == 200 ]] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert float(d["definition"]["steps"][0]["input"]["x"]) == -1.7976931348623155e+308' "$work/b" ||
    fail "read a huge number: $(cat "$work/b")"
ok "POST /v1/definitions: an invalid one 422 with every problem as sagactl validate words it (where, message, JSON pointer); bad JSON 400, not JSON 415; deployed 201 (version 1, Location), the same again 200 (unchanged), changed 201 (version 2); numbers like 1e300 survive PostgreSQL"

# ---- search, page by page
for i in 1 2 3 4; do
    req POST /v1/sagas '{"definition":"order","input":{"customer_id":"bob","sku":"widget","quantity":1,"amount":1}}' "$json"
    [[ $status == 201 ]] || fail "start $i: $status"
done
for _ in $(seq 1 300); do
    req GET "/v1/sagas?definition=order&limit=1000"
    [[ $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["sagas"]))' "$work/b") -ge 5 ]] && break
    sleep 0.1
done
seen=() cursor=
while :; do
    req GET "/v1/sagas?definition=order&limit=2${cursor:+&cursor=$cursor}"
    [[ $status == 200 ]] || fail "search: $status $(cat "$work/b")"
    mapfile -t page < <(python3 -c 'import json,sys; [print(s["id"]) for s in json.load(open(sys.argv[1]))["sagas"]]' "$work/b")
    seen+=("${page[@]}")
    cursor=$(field "['next_cursor'] or ''")
    [[ -n $cursor ]] || break
done
[[ ${#seen[@]} -eq 5 ]] || fail "pages gave ${#seen[@]} sagas, not 5: ${seen[*]}"
[[ $(printf '%s\n' "${seen[@]}" | sort -u | wc -l) -eq 5 ]] || fail "a saga came twice: ${seen[*]}"
[[ ${seen[4]} == "$id" ]] || fail "not newest first: the first saga is not last"
req GET "/v1/sagas?status=completed&definition=order&since=1h"
[[ $status == 200 ]] && grep -q "$id" "$work/b" || fail "status/since filter: $(cat "$work/b")"
req GET "/v1/sagas?definition=nothing"
[[ $status == 200 && $(field "['sagas']") == "[]" && $(field "['next_cursor']") == None ]] || fail "empty search: $(cat "$work/b")"
ok "GET /v1/sagas: keyset pages of 2 gave all 5 sagas once, newest first; status, definition and since filter"

# ---- every error a problem document, saying where
req POST /v1/sagas '{"definition":' "$json"; problem 400 malformed_json
req POST /v1/sagas '[1]' "$json"; problem 400 malformed_json
req POST /v1/sagas '{"definition":"order"}' "Content-Type: text/plain"; problem 415 unsupported_media_type
req POST /v1/sagas '{"definition":"nope"}' "$json"; problem 422 unknown_definition /definition
req POST /v1/sagas '{"definition":"order","input":[1]}' "$json"; problem 422 invalid_field /input
req POST /v1/sagas '{"definition":"order","extra":1}' "$json"; problem 422 unknown_field /extra
req POST /v1/sagas '{"input":{}}' "$json"; problem 422 invalid_field /definition
req POST /v1/sagas '{"definition":"order"}' "$json" "traceparent: nonsense"; problem 400 invalid_header traceparent
python3 -c 'print("{\"definition\":\"order\",\"input\":{\"x\":\"" + "a" * 300000 + "\"}}")' >"$work/big"
req POST /v1/sagas "@$work/big" "$json"; problem 413 input_too_large /input
python3 -c 'print("x" * 1100000)' >"$work/huge"
status=$(curl -sS -o "$work/b" -D "$work/h" -w '%{http_code}' -H "$json" --data-binary @"$work/huge" "$base/v1/sagas")
problem 413 body_too_large
req GET /v1/sagas/00000000-0000-4000-8000-000000000000; problem 404 not_found
req GET /v1/sagas/not-a-uuid; problem 404 not_found
req GET /v1/nothing; problem 404 not_found
req DELETE "/v1/sagas/$id"; problem 405 method_not_allowed
[[ $(header allow) == "GET, HEAD" ]] || fail "405 without Allow: $(header allow)"
req GET "/v1/sagas?status=done"; problem 400 invalid_parameter status
req GET "/v1/sagas?limit=0"; problem 400 invalid_parameter limit
req GET "/v1/sagas?cursor=xyz"; problem 400 invalid_parameter cursor
req GET "/v1/sagas?bogus=1"; problem 400 unknown_parameter bogus
req GET "/v1/sagas?since=yesterday"; problem 400 invalid_parameter since
# Values PostgreSQL refuses are the caller's mistake (400), not sagad's:
# a date that does not exist, a cursor out of range, bytes not UTF-8 —
# and a problem is still JSON when what it quotes is not UTF-8.
req GET "/v1/sagas?since=2024-02-30T00:00:00Z"; problem 400 invalid_parameter
req GET "/v1/sagas?cursor=123456789012345678901234_$id"; problem 400 invalid_parameter
req GET "/v1/sagas?definition=%FF"; problem 400 invalid_parameter
req GET "/v1/definitions/%FF"; problem 400 invalid_parameter
req GET "/v1/nothing%FF"; problem 404 not_found
req GET "/v1/sagas?bogus%FF=1"; problem 400 unknown_parameter
req POST /v1/sagas '{"definition":"order","input":{}}' "$json" "Idempotency-Key: caf$(printf '\xe9')"; problem 400 invalid_parameter
# sagad is still fine, and so are its other endpoints.
req GET /readyz; [[ $status == 200 ]] || fail "readyz after the errors: $status"
ok "errors: 400 (JSON, header, parameters), 404, 405 with Allow, 413 (input, body), 415, 422 (definition, field, input), each a problem document saying where"
# A saga's input with 1e300 (PostgreSQL prints every digit) comes back whole.
req POST /v1/sagas '{"definition":"order","input":{"customer_id":"alice","sku":"widget","quantity":1,"amount":1,"note":1e300}}' "$json"
huge=$(field "['id']")
for _ in $(seq 1 300); do
    req GET "/v1/sagas/$huge"
    [[ $(field "['status']") == completed ]] && break
    sleep 0.1
done
[[ $(field "['status']") == completed ]] && python3 -c 'import json,sys; assert float(json.load(open(sys.argv[1]))["input"]["note"]) == 1e300' "$work/b" || fail "a saga with 1e300 in its input: $(cat "$work/b")"
ok "a saga whose input holds 1e300 completed, its input read back whole"
# ---- tokens: once one exists, every caller needs one; roles
tok() { "$bin/sagactl" tokens create --role "$1" --name "$2" 2>/dev/null; }
rd=$(tok reader dash) s1=$(tok starter orders) s2=$(tok starter billing)
[[ ${#rd} -eq 68 && $rd == sgt_* ]] || fail "a token is not sgt_ and 64 hex digits: $rd"
[[ $(psql "$SAGA_PG_URL" -Atc "SELECT count(*) FROM saga.api_token WHERE hash LIKE '%$(cut -c5-20 <<<"$rd")%'") == 0 ]] ||
    fail "the token itself is stored"
if "$bin/sagactl" tokens create --role reader --name dash >/dev/null 2>&1; then fail "a token name reused"; fi
# sagad keeps what the database said of a caller for a second.
until_401() { # path header...: the caller refused within 3 s
    for _ in $(seq 1 30); do
        req GET "$@"
        [[ $status == 401 ]] && return
        sleep 0.1
    done
}
until_401 /v1/sagas ""
req GET /v1/sagas; problem 401 unauthorized Authorization
[[ $(header www-authenticate) == Bearer* ]] || fail "401 without WWW-Authenticate"
req GET /v1/sagas "" "Authorization: Bearer sgt_nothing"; problem 401 unauthorized
req GET /v1/sagas "" "Authorization: Basic eDp5"; problem 401 unauthorized
start_as() { # token key
    req POST /v1/sagas '{"definition":"order","input":{"customer_id":"bob","sku":"widget","quantity":1,"amount":1}}' \
        "$json" "Authorization: Bearer $1" ${2:+"Idempotency-Key: $2"}
}
start_as "$rd" k; problem 403 forbidden
start_as "$s1" shared-key; [[ $status == 201 ]] || fail "starter orders: $status $(cat "$work/b")"
o1=$(field "['id']")
start_as "$s2" shared-key; [[ $status == 201 ]] || fail "starter billing: $status $(cat "$work/b")"
b1=$(field "['id']")
[[ $o1 != "$b1" ]] || fail "one Idempotency-Key gave two tokens the same saga"
start_as "$s1" shared-key; [[ $status == 200 && $(field "['id']") == "$o1" ]] || fail "orders' own key: $status"
req GET "/v1/sagas/$o1" "" "Authorization: Bearer $s1"; [[ $status == 200 ]] || fail "orders reads its saga: $status"
req GET "/v1/sagas/$o1" "" "Authorization: Bearer $s2"; problem 404 not_found
req GET "/v1/sagas/$o1/history" "" "Authorization: Bearer $s2"; problem 404 not_found
for _ in $(seq 1 300); do
    req GET "/v1/sagas?limit=1000" "" "Authorization: Bearer $s2"
    grep -q "$b1" "$work/b" && break
    sleep 0.1
done
python3 -c 'import json,sys; ids=[s["id"] for s in json.load(open(sys.argv[1]))["sagas"]]; assert ids == [sys.argv[2]], ids' "$work/b" "$b1" ||
    fail "billing's search shows more than its own saga: $(cat "$work/b")"
req GET "/v1/sagas/$o1" "" "Authorization: Bearer $rd"; [[ $status == 200 ]] || fail "the reader reads: $status"
[[ $(psql "$SAGA_PG_URL" -Atc "SELECT started_by FROM saga.saga WHERE id = '$o1'") == token:orders ]] ||
    fail "the saga does not record the token's name"
"$bin/sagactl" tokens revoke orders >/dev/null || fail "revoke"
until_401 "/v1/sagas/$o1" "" "Authorization: Bearer $s1"
problem 401 unauthorized
"$bin/sagactl" tokens list | grep -q "^orders .* 20" || fail "tokens list does not show the revocation"
ok "tokens: none stored (only a hash), names never reused; once one exists, none is 401 (WWW-Authenticate); a reader may not start (403) but reads; starters see only their own sagas and keys; the saga records token:<name>; a revoked token is 401 (within the second sagad keeps what it read)"
echo "test_api: passed"
