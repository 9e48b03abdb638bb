#!/usr/bin/env bash
# sagactl purge against a real PostgreSQL: finished and unfinished sagas of
# different ages; --dry-run changes nothing; --status narrows; exactly the
# finished sagas older than the cutoff go, with their steps, history, outbox
# rows and start requests; the archive holds exactly them (a torn line left
# by a crash is cut off); a saga locked by someone else is skipped, not
# waited for; every other row is unchanged.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SAGA_PG_URL:?needs SAGA_PG_URL (run through scripts/run-tests)}"
bin=${SAGA_BUILD_DIR:-build}/bin
work=$(mktemp -d)
db="it_purge_$$"
admin=$SAGA_PG_URL
export SAGA_PG_URL="${SAGA_PG_URL%/*}/$db"
locker=
cleanup() {
    [[ -n $locker ]] && kill "$locker" 2>/dev/null && wait "$locker" 2>/dev/null
    PGOPTIONS="-c client_min_messages=warning" psql -q "$admin" \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test_purge: $*" >&2; exit 1; }
command -v jq >/dev/null || fail "needs jq (scripts/install-deps installs it)"
sql() { psql -qAtX -v ON_ERROR_STOP=1 "$SAGA_PG_URL" -c "$1"; }

psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
"$bin/sagactl" migrate --dir migrations >/dev/null

# Saga n has id 00000000-0000-4000-8000-00000000000n, two steps, three events.
sql "
INSERT INTO saga.saga_definition (name, version, body, digest) VALUES ('d', 1, '{}', 'x');
INSERT INTO saga.saga (id, name, version, status, cursor_step, input, idempotency_key,
                       created_at, updated_at, ended_at)
SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'd', 1, st, 1,
       jsonb_build_object('n', n), 'key-' || n,
       now() - age - interval '1 minute', now() - age,
       CASE WHEN st IN ('completed', 'compensated', 'resolved') THEN now() - age END
FROM (VALUES (1, 'completed', interval '10 days'), (2, 'compensated', interval '10 days'),
             (3, 'resolved', interval '3 days'), (4, 'completed', interval '1 day'),
             (5, 'failed', interval '10 days'), (6, 'running', interval '10 days'),
             (7, 'compensating', interval '10 days'), (8, 'completed', interval '5 days'),
             (9, 'completed', interval '6 days'), (10, 'compensated', interval '1 hour'))
     v(n, st, age);
INSERT INTO saga.saga_step (saga_id, idx, name, status, attempts, output)
SELECT id, i, 's' || i, 'succeeded', 1, jsonb_build_object('i', i)
FROM saga.saga, generate_series(0, 1) i;
INSERT INTO saga.saga_event (saga_id, at, kind, step, detail)
SELECT id, updated_at, k, CASE WHEN k = 'step_succeeded' THEN 0 END, '{}'
FROM saga.saga, unnest(ARRAY['saga_started', 'step_succeeded', 'saga_completed']) k;
-- Saga 8 was started through the client API and still has an unsent
-- command; saga 4 too (it is kept, so its rows must stay).
INSERT INTO saga.start_request (id, name, input, processed_at)
SELECT id, 'd', '{}', now() FROM saga.saga WHERE input->>'n' IN ('4', '8');
INSERT INTO saga.outbox (saga_id, topic, msg_key, payload)
SELECT id, 'saga.cmd.x', id::text, '{}' FROM saga.saga WHERE input->>'n' IN ('4', '8');
"
id() { printf '00000000-0000-4000-8000-%012d' "$1"; }

# A digest of every row that belongs to the sagas in $1 (a SQL list of n).
digest() {
    sql "SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
           SELECT s::text t FROM saga.saga s WHERE (input->>'n')::int IN ($1)
           UNION ALL SELECT st::text FROM saga.saga_step st JOIN saga.saga s
             ON s.id = st.saga_id WHERE (s.input->>'n')::int IN ($1)
           UNION ALL SELECT e::text FROM saga.saga_event e JOIN saga.saga s
             ON s.id = e.saga_id WHERE (s.input->>'n')::int IN ($1)
           UNION ALL SELECT (o.saga_id, o.topic, o.payload)::text FROM saga.outbox o
             JOIN saga.saga s ON s.id = o.saga_id WHERE (s.input->>'n')::int IN ($1)
           UNION ALL SELECT r::text FROM saga.start_request r JOIN saga.saga s
             ON s.id = r.id WHERE (s.input->>'n')::int IN ($1)) x"
}
all=$(digest "1,2,3,4,5,6,7,8,9,10")
kept_before=$(digest "4,5,6,7,9,10")

# Usage errors: only finished statuses, and an age is required.
set +e
"$bin/sagactl" purge --older-than 1d --status failed >/dev/null 2>&1
rc1=$?
"$bin/sagactl" purge --status completed >/dev/null 2>&1
rc2=$?
"$bin/sagactl" purge --older-than 1d --batch 0 >/dev/null 2>&1
rc3=$?
"$bin/sagactl" --db postgresql://nobody@127.0.0.1:1/x purge --older-than 1d >/dev/null 2>&1
rc4=$?
set -e
[[ $rc1 -eq 2 && $rc2 -eq 2 && $rc3 -eq 2 ]] || fail "usage errors exited $rc1 $rc2 $rc3, expected 2"
[[ $rc4 -eq 3 ]] || fail "an unreachable database exited $rc4, expected 3"

# A dry run counts and changes nothing, and writes no archive.
out=$("$bin/sagactl" purge --older-than 2d --dry-run --archive "$work/dry.jsonl")
[[ $out == "would purge 5 saga(s) last updated before "*"(completed 3, compensated 1, resolved 1)" ]] ||
    fail "dry run said: $out"
[[ ! -e $work/dry.jsonl ]] || fail "a dry run wrote an archive"
[[ $(digest "1,2,3,4,5,6,7,8,9,10") == "$all" ]] || fail "a dry run changed rows"

# --status narrows: only the resolved one goes.
"$bin/sagactl" purge --older-than 2d --status resolved --archive "$work/a.jsonl" >/dev/null
[[ $(sql "SELECT count(*) FROM saga.saga") -eq 9 ]] || fail "--status resolved purged more than one"
[[ $(sql "SELECT count(*) FROM saga.saga WHERE id = '$(id 3)'") -eq 0 ]] || fail "saga 3 is still there"

# Someone holds saga 9: purge skips it instead of waiting.
psql -qAtX "$SAGA_PG_URL" -c "BEGIN" \
    -c "SELECT 1 FROM saga.saga WHERE id = '$(id 9)' FOR UPDATE" \
    -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
locker=$!
for _ in $(seq 1 100); do
    [[ $(sql "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'") -eq 1 ]] && break
    sleep 0.1
done

# A crash in an earlier run left a torn line at the end of the archive.
printf '{"saga": {"id": "torn' >>"$work/a.jsonl"
start=$(date +%s%3N)
out=$(timeout 20 "$bin/sagactl" purge --older-than 2d --batch 2 --archive "$work/a.jsonl" --json)
took=$(($(date +%s%3N) - start))
kill "$locker" 2>/dev/null || true
wait "$locker" 2>/dev/null || true
locker=
[[ $took -lt 1500 ]] || fail "purge took $took ms: it waited for the locked saga"
[[ $(jq .purged <<<"$out") -eq 3 && $(jq .batches <<<"$out") -eq 2 ]] ||
    fail "purge reported $out, expected 3 sagas in 2 batches"

# Exactly 1, 2, 8 gone now (3 before), with all their rows.
gone=$(sql "SELECT string_agg(n::text, ',' ORDER BY n) FROM generate_series(1, 10) n
            WHERE NOT EXISTS (SELECT 1 FROM saga.saga WHERE (input->>'n')::int = n)")
[[ $gone == "1,2,3,8" ]] || fail "purged sagas $gone, expected 1,2,3,8"
for t in "saga_event WHERE saga_id" "saga_step WHERE saga_id" "outbox WHERE saga_id" \
    "start_request WHERE id"; do
    n=$(sql "SELECT count(*) FROM saga.$t IN ('$(id 1)', '$(id 2)', '$(id 3)', '$(id 8)')")
    [[ $n -eq 0 ]] || fail "saga.$t: $n rows of purged sagas left"
done
[[ $(digest "4,5,6,7,9,10") == "$kept_before" ]] || fail "rows of kept sagas changed"
[[ $(sql "SELECT count(*) FROM saga.saga WHERE id = '$(id 9)'") -eq 1 ]] ||
    fail "the locked saga 9 was purged"

# The archive: one JSON document per line (the torn line cut off), exactly the
# purged sagas, each with its steps and history; saga 8 with its start request
# and unsent command.
jq -e . "$work/a.jsonl" >/dev/null 2>&1 || fail "the archive has a line that is not JSON"
[[ $(wc -l <"$work/a.jsonl") -eq 4 ]] || fail "the archive has $(wc -l <"$work/a.jsonl") lines, expected 4"
ids=$(jq -r .saga.id "$work/a.jsonl" | sort | tr '\n' ' ')
[[ $ids == "$(id 1) $(id 2) $(id 3) $(id 8) " ]] || fail "the archive holds $ids"
# (jq 1.6's -e looks at the last output only: check over the whole file.)
jq -se 'all(.[]; (.steps | length) == 2 and (.events | length) == 3)' "$work/a.jsonl" \
    >/dev/null || fail "an archived saga lacks steps or events"
jq -se "map(select(.saga.id == \"$(id 8)\"))[0]
        | .start_request.id == \"$(id 8)\" and (.outbox | length) == 1" \
    "$work/a.jsonl" >/dev/null || fail "saga 8's start request or outbox row is not archived"
jq -se "map(select(.saga.id == \"$(id 2)\"))[0]
        | .saga.status == \"compensated\" and .saga.input.n == 2" \
    "$work/a.jsonl" >/dev/null || fail "saga 2's row is not archived as it was"

# Nothing left to purge at that age; the young and the unfinished stay.
out=$("$bin/sagactl" purge --older-than 2d)
[[ $out == "purged 0 saga(s) "* ]] || fail "a second purge said: $out"
[[ $(sql "SELECT count(*) FROM saga.saga") -eq 6 ]] || fail "a second purge removed more"
echo "test_purge: exactly the old finished sagas purged, archived, none waited for"
