#!/usr/bin/env bash
# The database roles of `sagactl roles create` (docs/OPERATIONS.md,
# "Database roles"), each refused what it must not do, on a database of its
# own: two starters (each sees and reuses only its own requests, sagas and
# idempotency keys, cannot ask in the other's name, cannot repair), a
# reader (reads, writes nothing), an operator (repairs, and the history
# names its role whatever it claims; no DDL), and sagad itself running as a
# role granted only saga_engine (starts sagas, sends their commands, applies
# the example services' replies until one saga completes and the repaired
# one is compensated; no DDL).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/roles-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
admin_url=$SAGA_PG_URL
db=it_roles_$$
n=$$
url() { echo "postgresql://$1@$hostport/$db"; } # trust auth: the role is the login
fail() { echo "test_roles: FAIL: $*" >&2; exit 1; }
ok() { echo "test_roles: ok: $*"; }
sagad_pid=
svc_pids=()
cleanup() {
    local rc=$?
    for p in "${svc_pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
    [[ -n $sagad_pid ]] && { kill -TERM "$sagad_pid" 2>/dev/null; wait "$sagad_pid" 2>/dev/null || true; }
    [[ $rc -ne 0 ]] && tail -n 20 "$work/sagad.log" >&2 2>/dev/null
    psql "$admin_url" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    for r in app_a app_b op rd eng; do
        psql "$admin_url" -q -c "DROP ROLE IF EXISTS ${r}_$n" >/dev/null 2>&1 || true
    done
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

psql "$admin_url" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
owner=$(url "$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")")
"$bin/sagactl" --db "$owner" migrate --dir migrations >/dev/null
"$bin/sagactl" --db "$owner" roles create >"$work/roles.log" || { cat "$work/roles.log" >&2; fail "roles create"; }
# Idempotent: a second run changes nothing and fails on nothing.
"$bin/sagactl" --db "$owner" roles create >/dev/null || fail "roles create, run again"
psql "$owner" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE app_a_$n LOGIN IN ROLE saga_starter;
CREATE ROLE app_b_$n LOGIN IN ROLE saga_starter;
CREATE ROLE op_$n LOGIN IN ROLE saga_operator;
CREATE ROLE rd_$n LOGIN IN ROLE saga_reader;
CREATE ROLE eng_$n LOGIN IN ROLE saga_engine;
SQL

# as ROLE SQL: the statement's output; refused ROLE SQL: must fail, and say why.
as() { psql "$(url "$1_$n")" -At -v ON_ERROR_STOP=1 -c "$2"; }
refused() {
    local out
    if out=$(psql "$(url "$1_$n")" -At -v ON_ERROR_STOP=1 -c "$2" 2>&1); then
        fail "$1 was allowed: $2"
    fi
    grep -qE "permission denied|row-level security|must be owner" <<<"$out" ||
        fail "$1 refused for another reason than rights: $2: $out"
}

# ---- sagad as a role granted only saga_engine
export SAGA_TOPIC_PREFIX="roles$n."
"$bin/sagad" --db "$(url "eng_$n")" --definitions sagas >"$work/sagad.log" 2>&1 &
sagad_pid=$!
for _ in $(seq 1 600); do grep -q "sagad running" "$work/sagad.log" && break; sleep 0.1; done
grep -q "sagad running" "$work/sagad.log" || fail "sagad did not start as saga_engine"
refused eng "CREATE TABLE saga.x (i int)"
refused eng "DROP TABLE saga.saga"
refused eng "ALTER TABLE saga.saga ADD COLUMN x int"
ok "sagad runs as a role granted only saga_engine, which has no DDL"

# ---- starters: their own sagas, their own keys
start() { # role key: start an order saga, print its id
    "$bin/sagactl" --db "$(url "$1_$n")" start order --key "$2" \
        --input '{"customer_id":"alice","sku":"widget","quantity":1,"amount":5}'
}
a1=$(start app_a k1)
b1=$(start app_b k1)
[[ $a1 != "$b1" ]] || fail "one idempotency key gave two callers the same saga"
[[ $(start app_a k1) == "$a1" ]] || fail "a caller's own key did not give its saga back"
for id in "$a1" "$b1"; do
    "$bin/sagactl" --db "$owner" wait "$id" --timeout 1s >/dev/null 2>&1 || true
    for _ in $(seq 1 300); do
        [[ $(psql "$owner" -Atc "SELECT count(*) FROM saga.saga WHERE id = '$id'") == 1 ]] && break
        sleep 0.1
    done
done
[[ $(psql "$owner" -Atc "SELECT started_by FROM saga.saga WHERE id = '$a1'") == app_a_$n ]] ||
    fail "the saga does not record who started it"
# Sent means: dispatched in the history, and the outbox rows deleted once
# Kafka confirmed them (sagad's role writes and deletes there).
sent=
for _ in $(seq 1 300); do
    sent=$(psql "$owner" -Atc "SELECT (SELECT count(*) FROM saga.saga_event WHERE kind = 'step_dispatched' AND saga_id IN ('$a1', '$b1')) || '/' || (SELECT count(*) FROM saga.outbox WHERE saga_id IN ('$a1', '$b1'))")
    [[ $sent == 2/0 ]] && break
    sleep 0.1
done
[[ $sent == 2/0 ]] || fail "sagad (saga_engine) did not send the sagas' first commands (dispatched/in outbox: $sent)"
ok "sagad as saga_engine turned both requests into sagas and sent their commands"
ok "one idempotency key, two callers: two sagas; the same caller: its own saga back"

[[ $(as app_a "SELECT count(*) FROM saga.saga") == 1 ]] || fail "starter a sees other callers' sagas"
[[ $(as app_a "SELECT count(*) FROM saga.saga WHERE id = '$b1'") == 0 ]] || fail "starter a reads b's saga"
[[ $(as app_a "SELECT count(*) FROM saga.start_request WHERE id = '$b1'") == 0 ]] || fail "starter a reads b's request (its input)"
[[ $(as app_a "SELECT count(*) FROM saga.saga_step WHERE saga_id = '$b1'") == 0 ]] || fail "starter a reads b's steps"
[[ $(as app_a "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$b1'") == 0 ]] || fail "starter a reads b's history"
[[ $(as app_a "SELECT count(*) FROM saga.saga_step WHERE saga_id = '$a1'") -gt 0 ]] || fail "starter a cannot read its own steps"
if "$bin/sagactl" --db "$(url "app_a_$n")" show "$b1" >"$work/show.log" 2>&1; then
    fail "sagactl show of b's saga worked for starter a"
fi
grep -q "no saga" "$work/show.log" || fail "sagactl show as a said: $(cat "$work/show.log")"
refused app_a "INSERT INTO saga.start_request (id, name, input, requested_by) VALUES (gen_random_uuid(), 'order', '{}', 'app_b_$n')"
refused app_a "UPDATE saga.saga SET status = 'completed' WHERE id = '$a1'"
refused app_a "INSERT INTO saga.saga_event (saga_id, at, kind) VALUES ('$a1', now(), 'x')"
refused app_a "DELETE FROM saga.start_request"
refused app_a "SELECT count(*) FROM saga.outbox"
if "$bin/sagactl" --db "$(url "app_a_$n")" compensate "$a1" --reason "mine" >"$work/repair.log" 2>&1; then
    fail "starter a repaired a saga"
fi
grep -q "permission denied" "$work/repair.log" || fail "starter a's repair refused for another reason: $(cat "$work/repair.log")"
"$bin/sagactl" --db "$(url "app_a_$n")" show "$a1" >/dev/null || fail "starter a cannot show its own saga"
ok "a starter sees only its own requests, sagas, steps and history; cannot ask in another's name, write a saga or the history, or repair"

# ---- reader
[[ $(as rd "SELECT count(*) FROM saga.saga") == 2 ]] || fail "the reader does not see every saga"
refused rd "INSERT INTO saga.start_request (id, name, input) VALUES (gen_random_uuid(), 'order', '{}')"
refused rd "UPDATE saga.limits SET value = 1"
refused rd "DELETE FROM saga.dead_letter"
# Every table of the schema, every way of writing (a right is checked
# before any row is looked at, so WHERE false is enough to be refused).
tables=$(psql "$owner" -At -c "SELECT tablename FROM pg_tables WHERE schemaname = 'saga'")
[[ $(wc -w <<<"$tables") -ge 10 ]] || fail "only these tables in schema saga: $tables"
for t in $tables; do
    col=$(psql "$owner" -At -c "SELECT attname FROM pg_attribute WHERE attrelid = 'saga.$t'::regclass AND attnum = 1")
    for who in rd app_a; do
        # A starter asks for sagas and signals its own (row-level security
        # below keeps it to its own).
        [[ $who == app_a && ($t == start_request || $t == saga_signal) ]] ||
            refused "$who" "INSERT INTO saga.$t SELECT * FROM saga.$t WHERE false"
        refused "$who" "UPDATE saga.$t SET $col = $col WHERE false"
        refused "$who" "DELETE FROM saga.$t WHERE false"
        refused "$who" "TRUNCATE saga.$t"
    done
done
for cmd in list stuck stats "show $a1" "history $a1"; do
    rc=0 # stuck exits 1 when it finds some
    # shellcheck disable=SC2086 # cmd is words
    "$bin/sagactl" --db "$(url "rd_$n")" $cmd >"$work/rd.log" 2>&1 || rc=$?
    [[ $rc -eq 0 || ($cmd == stuck && $rc -eq 1) ]] || fail "the reader's sagactl $cmd: $(cat "$work/rd.log")"
done
if "$bin/sagactl" --db "$(url "rd_$n")" resolve "$b1" --reason "x" >"$work/rd.log" 2>&1; then
    fail "the reader repaired a saga"
fi
grep -q "permission denied" "$work/rd.log" || fail "the reader's repair refused for another reason: $(cat "$work/rd.log")"
ok "the reader reads everything (sagactl list, stuck, stats, show, history) and writes nothing, in no table"
# A starter signals only its own sagas.
refused app_a "INSERT INTO saga.saga_signal (saga_id, name, signal_id) VALUES ('$b1', 'approval', 'x')"
as app_a "INSERT INTO saga.saga_signal (saga_id, name, signal_id) VALUES ('$a1', 'approval', 'x')" >/dev/null ||
    fail "starter a cannot signal its own saga"
refused app_a "INSERT INTO saga.saga_signal (saga_id, name, signal_id, sent_by) VALUES ('$a1', 'approval', 'y', 'someone')"
ok "a starter signals its own sagas, not another's (row-level security), and cannot say it was someone else"

# ---- operator: repairs, recorded as its role; no DDL
"$bin/sagactl" --db "$(url "op_$n")" compensate "$a1" --reason "customer cancelled" --as "ticket-42" \
    >"$work/op.log" 2>&1 || fail "the operator's repair: $(cat "$work/op.log")"
row=$(psql "$owner" -At -c "SELECT actor || '|' || (detail->>'operator') || '|' || (detail->>'on_behalf_of') FROM saga.saga_event WHERE saga_id = '$a1' AND kind = 'operator_compensate'")
[[ $row == "operator:op_$n|op_$n|ticket-42" ]] || fail "the repair's history line says $row"
# A line written by hand cannot claim another operator.
as op "INSERT INTO saga.saga_event (saga_id, at, kind, detail, actor) VALUES ('$a1', now(), 'operator_note', '{\"operator\":\"someone-else\"}', 'operator:someone-else')" >/dev/null
row=$(psql "$owner" -At -c "SELECT actor || '|' || (detail->>'operator') FROM saga.saga_event WHERE saga_id = '$a1' AND kind = 'operator_note'")
[[ $row == "operator:op_$n|op_$n" ]] || fail "a hand-written operator line kept its claim: $row"
"$bin/sagactl" --db "$(url "op_$n")" history "$a1" >"$work/history.log" || fail "the operator's history"
grep "operator_compensate" "$work/history.log" | grep -q "operator:op_$n .*\"on_behalf_of\":\"ticket-42\"" ||
    fail "sagactl history does not show the role and on-behalf-of: $(grep operator_ "$work/history.log")"
"$bin/sagactl" --db "$(url "op_$n")" limits set max_input_bytes 300000 --reason "bulk" --as "ticket-7" \
    >/dev/null || fail "the operator's limits set"
[[ $(psql "$owner" -Atc "SELECT updated_by FROM saga.limits WHERE name = 'max_input_bytes'") == "op_$n (on behalf of ticket-7)" ]] ||
    fail "limits set does not record the operator's role"
refused op "CREATE TABLE saga.x (i int)"
refused op "DROP TABLE saga.outbox"
ok "the operator repairs; the history names its database role (--as only as on-behalf-of), even for a line written by hand; no DDL"

# ---- the participants answer: sagad as saga_engine applies their replies
# and takes both sagas to their end (a1 compensated, as the operator said;
# b1 completed), and each starter waits for its own saga only.
for svc in order payment inventory; do
    SAGA_PG_URL=$owner "$bin/$svc-service" >"$work/$svc.log" 2>&1 &
    svc_pids+=($!)
done
for svc in order payment inventory; do
    for _ in $(seq 1 300); do grep -q "ready" "$work/$svc.log" && break; sleep 0.1; done
    grep -q "ready" "$work/$svc.log" || fail "the $svc service did not start: $(tail -n 5 "$work/$svc.log")"
done
psql "$owner" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
[[ $("$bin/sagactl" --db "$(url "app_b_$n")" wait "$b1" --timeout 60s) == completed ]] ||
    fail "b's saga did not complete for b (sagad as saga_engine)"
[[ $("$bin/sagactl" --db "$(url "app_a_$n")" wait "$a1" --timeout 60s) == compensated ]] ||
    fail "a's saga was not compensated for a (sagad as saga_engine)"
if "$bin/sagactl" --db "$(url "app_a_$n")" wait "$b1" --timeout 1s >"$work/wait.log" 2>&1; then
    fail "starter a waited for b's saga: $(cat "$work/wait.log")"
fi
grep -q "no saga" "$work/wait.log" || fail "sagactl wait of b's saga as a said: $(cat "$work/wait.log")"
ok "sagad as saga_engine completed one saga and compensated the other; each starter waits for its own only"
echo "test_roles: passed"
