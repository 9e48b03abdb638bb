#!/usr/bin/env bash
# sagactl migrate against a real PostgreSQL: every file applied once, in
# order, with its checksum; a second run applies nothing; an applied file
# that was edited, an applied file that went missing and a pending file
# older than the newest applied one each refuse the run with nothing
# applied; a file whose SQL fails is rolled back whole; two runs at once
# apply each file exactly once.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SAGA_PG_URL:?needs SAGA_PG_URL (run through scripts/run-tests)}"
bin=${SAGA_BUILD_DIR:-build}/bin
work=$(mktemp -d)
db="it_migrate_$$"
admin=$SAGA_PG_URL
export SAGA_PG_URL="${SAGA_PG_URL%/*}/$db"
cleanup() {
    PGOPTIONS="-c client_min_messages=warning" psql -q "$admin" \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test_migrate: $*" >&2; exit 1; }
sql() { psql -qAtX -v ON_ERROR_STOP=1 "$SAGA_PG_URL" -c "$1"; }
# Run sagactl migrate on a folder; sets $out (stdout and stderr) and $rc.
migrate() {
    set +e
    out=$("$bin/sagactl" migrate --dir "$1" 2>&1)
    rc=$?
    set -e
}
has_table() { [[ $(sql "SELECT to_regclass('$1') IS NOT NULL") == t ]]; }

psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
dir=$work/migrations
cp -r migrations "$dir"
files=$(ls "$dir"/*.sql | wc -l)

# First run: every file, in order, each recorded with its SHA-256.
migrate "$dir"
[[ $rc -eq 0 ]] || fail "first run failed ($rc): $out"
[[ $out == *"$files migration(s) applied"* ]] || fail "expected $files applied: $out"
[[ $(grep -c '^applied ' <<<"$out") -eq $files ]] || fail "not one line per file: $out"
[[ $(grep '^applied ' <<<"$out" | awk '{print $2}') == $(cd "$dir" && ls *.sql) ]] ||
    fail "not applied in order: $out"
for f in "$dir"/*.sql; do
    v=$((10#$(basename "$f" | cut -c1-4)))
    want=$(sha256sum "$f" | cut -d' ' -f1)
    got=$(sql "SELECT checksum FROM saga.schema_migrations WHERE version = $v")
    [[ $got == "$want" ]] || fail "$(basename "$f"): checksum $got, file $want"
done

# Second run: nothing to do.
migrate "$dir"
[[ $rc -eq 0 && $out == *"0 migration(s) applied"* ]] || fail "second run: $rc $out"
[[ $(grep -c '^up to date ' <<<"$out") -eq $files ]] || fail "second run lines: $out"

count0=$(sql "SELECT count(*) FROM saga.schema_migrations")
first=$(ls "$dir" | head -n 1)

# An applied file edited: refused, and a pending file beside it is not applied.
printf 'CREATE TABLE saga.t_extra (x int);\n' >"$dir/0990_extra.sql"
cp "$dir/$first" "$work/first.bak"
printf '\n-- edited after it was applied\n' >>"$dir/$first"
migrate "$dir"
[[ $rc -eq 1 ]] || fail "edited file: exit $rc, expected 1: $out"
[[ $out == *"$first was changed after it was applied"*"nothing applied"* ]] ||
    fail "edited file: message does not say which file changed: $out"
! has_table saga.t_extra || fail "edited file: the pending file was applied anyway"
[[ $(sql "SELECT count(*) FROM saga.schema_migrations") -eq $count0 ]] ||
    fail "edited file: schema_migrations changed"
cp "$work/first.bak" "$dir/$first"

# An applied file missing: refused.
mv "$dir/$first" "$work/"
migrate "$dir"
[[ $rc -eq 1 && $out == *"is applied but missing"* ]] || fail "missing file: $rc $out"
! has_table saga.t_extra || fail "missing file: the pending file was applied anyway"
mv "$work/$first" "$dir/"

# Restored: the pending file goes in, once.
migrate "$dir"
[[ $rc -eq 0 && $out == *"applied  0990_extra.sql"* && $out == *"1 migration(s) applied"* ]] ||
    fail "pending file: $rc $out"
has_table saga.t_extra || fail "0990_extra.sql was not applied"

# A pending file older than the newest applied one: refused, not slipped in.
printf 'CREATE TABLE saga.t_late (x int);\n' >"$dir/0500_late.sql"
migrate "$dir"
[[ $rc -eq 1 && $out == *"0500_late.sql is not applied but is older than"* ]] ||
    fail "out-of-order file: $rc $out"
! has_table saga.t_late || fail "the out-of-order file was applied"
rm "$dir/0500_late.sql"

# A file whose SQL fails: rolled back whole, not recorded, the next not run.
printf 'CREATE TABLE saga.t_bad (x int);\nSELECT no_such_column FROM saga.t_bad;\n' \
    >"$dir/0991_bad.sql"
printf 'CREATE TABLE saga.t_after (x int);\n' >"$dir/0992_after.sql"
migrate "$dir"
[[ $rc -eq 1 && $out == *"0991_bad.sql failed, rolled back"*"no_such_column"* ]] ||
    fail "bad SQL: $rc $out"
! has_table saga.t_bad || fail "bad SQL: its first statement was not rolled back"
! has_table saga.t_after || fail "bad SQL: the file after it was applied"
[[ $(sql "SELECT count(*) FROM saga.schema_migrations WHERE version >= 991") -eq 0 ]] ||
    fail "bad SQL: recorded as applied"
rm "$dir/0991_bad.sql" "$dir/0992_after.sql" "$dir/0990_extra.sql"

# Two runs at once on a new database: each file applied exactly once.
psql -q "$admin" -c "DROP DATABASE $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
"$bin/sagactl" migrate --dir "$dir" >"$work/a.out" 2>&1 &
a=$!
"$bin/sagactl" migrate --dir "$dir" >"$work/b.out" 2>&1 &
b=$!
wait "$a" || fail "concurrent run a failed: $(cat "$work/a.out")"
wait "$b" || fail "concurrent run b failed: $(cat "$work/b.out")"
total=$(( $(grep -c '^applied ' "$work/a.out" || true) + $(grep -c '^applied ' "$work/b.out" || true) ))
[[ $total -eq $files ]] || fail "concurrent runs applied $total files, expected $files"
[[ $(sql "SELECT count(*) FROM saga.schema_migrations") -eq $files ]] ||
    fail "concurrent runs: schema_migrations has the wrong number of rows"

echo "test_migrate: $files files applied once and in order; edited, missing, out-of-order and failing files refused with nothing applied; concurrent runs applied each file once"
