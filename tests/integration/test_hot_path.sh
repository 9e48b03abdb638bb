#!/usr/bin/env bash
# The cheaper transitions (issue 17; docs/PERFORMANCE.md, "How the cost is
# kept down"), on a real sagad, PostgreSQL and the example services:
#   - new saga ids are UUIDs of version 7, in the order they were started
#     (sagactl start through libsaga's client, and the HTTP API);
#   - most updates of a saga's row and of its steps' rows are HOT (no new
#     index entry), as PostgreSQL's own counters show;
#   - a participant writes one barrier row per command (inserted with its
#     reply, never updated);
#   - a timer kept early (the store does not move it later while it is
#     ahead) fires, finds nothing due, and is set to the exact time once:
#     no history line, no second wake, and the saga completes;
#   - a finished saga has ended_at, which purge and the console's counts
#     read.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init hot_path
it_services
mkdir -p "$work/sagas"
python3 - sagas/order.json "$work/sagas" <<'PY'
import copy, json, sys
base = json.load(open(sys.argv[1]))
json.dump(base, open(f"{sys.argv[2]}/order.json", "w"), indent=2)
# reserve_credit (1 s timeout, answered at once), then a wait for a
# signal of up to 10 s: the saga's timer stays at reserve_credit's due
# time while it waits.
d = {"name": "late_order", "steps": [copy.deepcopy(base["steps"][1]),
     {"name": "approval", "wait": {"signal": "approval", "timeout": "10s"}}]}
d["steps"][0]["timeout"] = "1s"
d["steps"][0]["input"]["order_id"] = "n/a"
json.dump(d, open(f"{sys.argv[2]}/late_order.json", "w"), indent=2)
PY
it_sagad "$work/sagas"
# Stock for every order here (the seed has 10 widgets).
psql "$SAGA_PG_URL" -q -c "UPDATE inventory.stock SET available = 1000 WHERE sku = 'widget'"
input='{"customer_id":"alice","sku":"widget","quantity":1,"amount":1}'
q() { psql "$SAGA_PG_URL" -Atq -c "$1"; }
wait_for() { # sql value what
    for _ in $(seq 1 300); do [[ $(q "$1") == "$2" ]] && return; sleep 0.1; done
    fail "$3: $(q "$1")"
}

# ---- ids: version 7, time-ordered, from libsaga's client and the API
ids=()
for i in 1 2 3; do
    ids+=("$("$bin/sagactl" start order --input "$input" --no-wait)")
    ids+=("$(curl -sS -X POST "$base/v1/sagas" -H 'Content-Type: application/json' \
        -d "{\"definition\":\"order\",\"input\":$input}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
    sleep 0.01
done
for id in "${ids[@]}"; do
    [[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
        fail "saga id $id is not a UUID of version 7 (variant 10)"
done
# The first 48 bits are the milliseconds they were made at: in order
# (started 10 ms apart, so no two share a millisecond), and near now.
prev=
for id in "${ids[@]}"; do
    ms=$((16#${id:0:8}${id:9:4}))
    [[ -z $prev || $ms -ge $prev ]] || fail "ids out of order: ${ids[*]}"
    prev=$ms
done
now=$(date +%s%3N)
((now - prev < 60000 && prev <= now + 1000)) || fail "id time $prev is not near now ($now)"
for id in "${ids[@]}"; do
    out=$("$bin/sagactl" wait "$id" --timeout 60s) || fail "saga $id: $out"
    [[ $out == *completed* ]] || fail "saga $id: $out"
done
ok "6 sagas started through sagactl and the API have UUID version 7 ids in start order, and completed"

# ---- HOT updates and one barrier write per command
for _ in $(seq 1 24); do "$bin/sagactl" start order --input "$input" --no-wait >/dev/null; done
for _ in $(seq 1 600); do [[ $(q "SELECT count(*) FROM saga.saga WHERE status <> 'completed'") == 0 ]] && break; sleep 0.1; done
[[ $(q "SELECT count(*) FROM saga.saga WHERE status <> 'completed'") == 0 ]] ||
    fail "sagas not completed: $(q "SELECT status, cursor_step, count(*) FROM saga.saga GROUP BY 1, 2")"
sagas=$(q "SELECT count(*) FROM saga.saga")
# Counters reach pg_stat from each backend at most once a second, or
# after ten idle seconds: wait until every command's barrier row counts.
cmds=$((sagas * 4))
stat() { # schema table column
    q "SELECT pg_stat_clear_snapshot(); SELECT $3 FROM pg_stat_user_tables WHERE schemaname = '$1' AND relname = '$2'" | tail -n 1
}
barrier_rows() {
    q "SELECT pg_stat_clear_snapshot(); SELECT sum(n_tup_ins) FROM pg_stat_user_tables WHERE relname = 'saga_barrier'" | tail -n 1
}
for _ in $(seq 1 300); do [[ $(barrier_rows) -ge $cmds ]] && break; sleep 0.1; done
[[ $(barrier_rows) == "$cmds" ]] || fail "barrier rows inserted: $(barrier_rows), for $cmds commands"
upd=$(q "SELECT pg_stat_clear_snapshot(); SELECT sum(n_tup_upd) FROM pg_stat_user_tables WHERE relname = 'saga_barrier'" | tail -n 1)
[[ $upd == 0 ]] || fail "barrier rows updated: $upd (each should be written once)"
for _ in $(seq 1 300); do [[ $(stat saga saga n_tup_upd) -ge $((sagas * 4)) ]] && break; sleep 0.1; done
s_upd=$(stat saga saga n_tup_upd)
s_hot=$(stat saga saga n_tup_hot_upd)
st_upd=$(stat saga saga_step n_tup_upd)
st_hot=$(stat saga saga_step n_tup_hot_upd)
# Four updates per four-step saga: three mid-way (HOT when there is room
# on the page) and the last, which changes status, ended_at and wake_at.
((s_hot * 2 >= s_upd)) || fail "saga rows: $s_hot of $s_upd updates were HOT (expected at least half)"
((st_hot * 2 >= st_upd)) || fail "step rows: $st_hot of $st_upd updates were HOT (expected at least half)"
ok "$sagas sagas: $cmds commands wrote $cmds barrier rows and updated none; saga rows $s_hot of $s_upd updates HOT, step rows $st_hot of $st_upd"

# ---- a timer kept early fires, finds nothing due, and is set exactly
id=$("$bin/sagactl" start late_order --input "$input" --no-wait)
st() { q "SELECT status FROM saga.saga_step WHERE saga_id = '$id' AND name = '$1'"; }
wait_for "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'step_waiting'" 1 \
    "the saga does not wait for its signal"
# The wait is due in 10 s; the stored timer is still reserve_credit's (1 s
# after it was sent), earlier than that.
early=$(q "SELECT s.wake_at < st.due_at FROM saga.saga s JOIN saga.saga_step st ON st.saga_id = s.id
           AND st.name = 'approval' WHERE s.id = '$id'")
[[ $early == t ]] || fail "the timer was moved later (not lazy): $(q "SELECT wake_at FROM saga.saga WHERE id = '$id'")"
events=$(q "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id'")
# Within about a second it fires, and is set to the wait's due time.
wait_for "SELECT s.wake_at = st.due_at FROM saga.saga s JOIN saga.saga_step st ON st.saga_id = s.id
          AND st.name = 'approval' WHERE s.id = '$id'" t "the early timer was not set to the exact time"
[[ $(st approval) == dispatched ]] || fail "approval: $(st approval) (the early wake acted)"
[[ $(q "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id'") == "$events" ]] ||
    fail "the early wake wrote history: $(q "SELECT string_agg(kind, ' ' ORDER BY id) FROM saga.saga_event WHERE saga_id = '$id'")"
"$bin/sagactl" signal "$id" approval --payload '{"by":"ann"}' >/dev/null
out=$("$bin/sagactl" wait "$id" --timeout 60s) || fail "late_order: $out"
[[ $out == *completed* ]] || fail "late_order: $out"
ok "a timer kept early (reserve_credit's) fired, found nothing due and was set to the wait's due time, with no history line; the signal then completed the saga"

# ---- ended_at: set once when a saga finishes, read by purge and the counts
[[ $(q "SELECT count(*) FROM saga.saga WHERE status = 'completed' AND (ended_at IS NULL OR ended_at <> updated_at)") == 0 ]] ||
    fail "completed sagas without ended_at = their last update"
[[ $(q "SELECT count(*) FROM saga.saga WHERE status NOT IN ('completed', 'compensated', 'resolved') AND ended_at IS NOT NULL") == 0 ]] ||
    fail "unfinished sagas with ended_at"
n=$(q "SELECT count(*) FROM saga.saga")
sleep 1.1 # purge takes sagas finished before now minus --older-than (whole seconds)
out=$("$bin/sagactl" purge --older-than 1s --dry-run --json)
[[ $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["by_status"].get("completed"))' "$out") == "$n" ]] ||
    fail "purge --dry-run does not count the $n completed sagas: $out"
# No token exists: loopback callers need none.
fin=$(curl -sS "$base/v1/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["finished"]["last_hour"])' 2>/dev/null) || fin=
[[ $fin == "$n" ]] || fail "GET /v1/stats finished.last_hour is $fin, not $n"
ok "finished sagas carry ended_at (= their last update), unfinished ones none; purge counts them by it"
