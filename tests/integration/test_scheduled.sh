#!/usr/bin/env bash
# Delayed starts (issue 15, item 5) against a real sagad: a saga asked to
# start later is "scheduled" (sagactl show, list --status scheduled, the
# API), starts when its time comes (and not before) and runs to its end;
# one cancelled before then never starts (sagactl cancel, the API), a
# second cancel and a cancel of a started saga are refused saying why; a
# starter may cancel only its own; bad times are refused.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init scheduled
it_services
it_sagad sagas
input='{"customer_id":"alice","sku":"widget","quantity":1,"amount":10}'
status_of() { psql "$SAGA_PG_URL" -Atq -c "SELECT status FROM saga.saga WHERE id = '$1'"; }

# ---- sagactl start --in: scheduled, then started when due
t0=$(date +%s.%N)
id=$("$bin/sagactl" start order --input "$input" --in 3s --business-key sched-1)
"$bin/sagactl" show "$id" >"$work/show.txt"
grep -q "^status    scheduled: starts .*(in [0-9]s)" "$work/show.txt" || fail "show: $(cat "$work/show.txt")"
grep -q "^business  sched-1" "$work/show.txt" || fail "show: no business key: $(cat "$work/show.txt")"
"$bin/sagactl" list --status scheduled | grep -q "^$id  order" || fail "list --status scheduled: $("$bin/sagactl" list --status scheduled)"
[[ -z $(status_of "$id") ]] || fail "the saga started before its time"
out=$("$bin/sagactl" wait "$id" --timeout 60s) || fail "wait: $out"
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
[[ $out == *completed* ]] || fail "the scheduled saga: $out"
(($(python3 -c "print(int($took >= 2.9))"))) || fail "it started after $took s, before its 3 s"
started=$(psql "$SAGA_PG_URL" -Atq -c "SELECT round(extract(epoch FROM s.created_at - r.start_at)::numeric, 1) FROM saga.saga s JOIN saga.start_request r USING (id) WHERE s.id = '$id'")
(($(python3 -c "print(int(0 <= $started < 3))"))) || fail "started $started s after its time"
ok "sagactl start --in 3s: scheduled (show, list --status scheduled), started $started s after its time, completed ($took s after it was asked)"

# ---- sagactl cancel
id=$("$bin/sagactl" start order --input "$input" --at 2099-01-01T00:00:00Z)
"$bin/sagactl" show "$id" | grep -q "scheduled: starts 2099-01-01 00:00:00" || fail "--at: $("$bin/sagactl" show "$id")"
rc=0; "$bin/sagactl" cancel "$id" >"$work/c.txt" 2>&1 || rc=$?
[[ $rc == 2 ]] && grep -q "reason is required" "$work/c.txt" || fail "cancel without a reason: $rc $(cat "$work/c.txt")"
"$bin/sagactl" cancel "$id" --reason "customer changed their mind" | grep -q "is cancelled" || fail "cancel"
"$bin/sagactl" show "$id" >"$work/show.txt" || true
grep -q "^status    cancelled .*customer changed their mind" "$work/show.txt" || fail "show after cancel: $(cat "$work/show.txt")"
rc=0; "$bin/sagactl" cancel "$id" --reason again >"$work/c.txt" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "was cancelled already" "$work/c.txt" || fail "second cancel: $rc $(cat "$work/c.txt")"
done_id=$(psql "$SAGA_PG_URL" -Atq -c "SELECT id FROM saga.saga WHERE status = 'completed' LIMIT 1")
rc=0; "$bin/sagactl" cancel "$done_id" --reason late >"$work/c.txt" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "has started: only a saga that has not started can be cancelled" "$work/c.txt" ||
    fail "cancel of a started saga: $rc $(cat "$work/c.txt")"
for bad in "--at 2026-13-01T00:00:00Z" "--at tomorrow" "--in soon" "--in 1h --at 2099-01-01T00:00:00Z"; do
    rc=0
    # shellcheck disable=SC2086
    "$bin/sagactl" start order --input "$input" $bad >"$work/bad.txt" 2>&1 || rc=$?
    [[ $rc == 2 ]] || fail "start $bad: exit $rc $(cat "$work/bad.txt")"
done
ok "sagactl cancel: a saga scheduled for 2099 cancelled with a reason (show says who and why); without a reason 2; again, or a started saga, refused (1); bad --at/--in 2"

# ---- the API
starter=$("$bin/sagactl" tokens create --role starter --name shop 2>/dev/null)
other=$("$bin/sagactl" tokens create --role starter --name other 2>/dev/null)
req() { # method path body token
    status=$(curl -sS -o "$work/b" -w '%{http_code}' -X "$1" "$base$2" -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $4" ${3:+--data-binary "$3"})
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$work/b" "$1"; }
req POST /v1/sagas "{\"definition\":\"order\",\"input\":$input,\"start_in\":\"2s\"}" "$starter"
[[ $status == 201 && $(field "['status']") == scheduled && $(field "['start_at']") != None ]] || fail "API start_in: $status $(cat "$work/b")"
soon=$(field "['id']")
req GET "/v1/sagas/$soon?wait=30s" "" "$starter"
[[ $status == 200 && $(field "['status']") == completed ]] || fail "API scheduled saga: $status $(cat "$work/b")"
req POST /v1/sagas "{\"definition\":\"order\",\"input\":$input,\"start_at\":\"2099-06-01T12:00:00Z\"}" "$starter"
[[ $status == 201 && $(field "['status']") == scheduled ]] || fail "API start_at: $status $(cat "$work/b")"
later=$(field "['id']")
req POST "/v1/sagas/$later/cancel" '{"reason":"not mine"}' "$other"
[[ $status == 404 ]] || fail "another starter cancelled it: $status $(cat "$work/b")"
req POST "/v1/sagas/$later/cancel" '{}' "$starter"
[[ $status == 422 && $(field "['pointer']") == /reason ]] || fail "cancel without a reason: $status $(cat "$work/b")"
# A long poll on it is answered when it is cancelled, not at its deadline.
curl -sS -o "$work/waited.json" -H "Authorization: Bearer $starter" "$base/v1/sagas/$later?wait=60s" &
waiter=$!
for _ in $(seq 1 100); do
    (($(ss -Htn state established "( dport = :${base##*:} )" | wc -l) >= 1)) && break
    sleep 0.1
done
t0=$(date +%s)
req POST "/v1/sagas/$later/cancel" '{"reason":"order withdrawn"}' "$starter"
[[ $status == 200 && $(field "['status']") == cancelled ]] || fail "API cancel: $status $(cat "$work/b")"
wait "$waiter"
(($(date +%s) - t0 < 30)) && grep -q '"cancelled"' "$work/waited.json" ||
    fail "the long poll was not answered by the cancel: $(cat "$work/waited.json")"
req POST "/v1/sagas/$later/cancel" '{"reason":"again"}' "$starter"
[[ $status == 409 && $(field "['code']") == refused ]] || fail "API second cancel: $status $(cat "$work/b")"
req POST "/v1/sagas/$soon/cancel" '{"reason":"too late"}' "$starter"
[[ $status == 409 ]] && grep -q "has started" "$work/b" || fail "API cancel of a started saga: $status $(cat "$work/b")"
for bad in '"start_at":"tomorrow"' '"start_at":"2026-02-30T00:00:00Z"' '"start_in":"soon"' '"start_in":"1h","start_at":"2099-01-01T00:00:00Z"'; do
    req POST /v1/sagas "{\"definition\":\"order\",\"input\":$input,$bad}" "$starter"
    [[ $status == 422 || $status == 400 ]] || fail "API start with $bad: $status $(cat "$work/b")"
done
ok "the API: start_in 2s scheduled then completed (a long poll waited through it); start_at 2099 cancelled by its starter (another's 404, no reason 422, again or started 409); bad times refused"
echo "test_scheduled: passed"
