#!/usr/bin/env bash
# Definitions are checked before anything runs: sagactl validate exits 0/1
# with every problem, and sagad refuses to start with an invalid definition
# (no server needed: it validates before connecting).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${SAGA_BUILD_DIR:-build}/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test_cli_validation: $*" >&2; exit 1; }

cat >"$work/bad.json" <<'JSON'
{
  "name": "bad",
  "steps": [
    {"name": "a", "service": "s", "acton": "x", "timeout": "soon"},
    {"name": "a", "service": "s", "action": "y", "input": {"v": "${steps.zz.output.id}"}}
  ]
}
JSON
printf '{\n  "name": "broken",\n  "steps": [\n' >"$work/syntax.json"

"$bin/sagactl" validate sagas/*.json tests/data/*.json >/dev/null ||
    fail "the shipped definitions do not validate"

# Every message, exactly: each tests/data/invalid/NAME.json must give the
# lines of NAME.expected, each prefixed with the file, and exit 1.
checked=0
for def in tests/data/invalid/*.json; do
    set +e
    "$bin/sagactl" validate "$def" >"$work/stdout" 2>"$work/stderr"
    rc=$?
    set -e
    [[ $rc -eq 1 ]] || fail "validate $def exited $rc, expected 1"
    [[ ! -s $work/stdout ]] || fail "validate $def printed to stdout: $(cat "$work/stdout")"
    sed "s|^|$def: |" "${def%.json}.expected" >"$work/want"
    diff -u "$work/want" "$work/stderr" >"$work/diff" ||
        fail "validate $def did not print exactly ${def%.json}.expected:
$(cat "$work/diff")"
    checked=$((checked + 1))
done
[[ $checked -ge 30 ]] || fail "only $checked files in tests/data/invalid"
set +e
"$bin/sagactl" validate "$work/bad.json" 2>"$work/out"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "validate of a bad file exited $rc, expected 1"
for want in 'steps[0]: unknown key "acton"' 'steps[0].action: missing' \
    'steps[0].timeout: "soon" is not a positive duration' 'steps[1]: duplicate step name "a"' \
    'names unknown step "zz"' 'step "a" has no compensation'; do
    grep -qF "$want" "$work/out" || fail "validate did not report: $want"
done
set +e
"$bin/sagactl" validate "$work/syntax.json" 2>"$work/out2"
rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "line 4, column" "$work/out2" || fail "no line and column for a syntax error"

# validate --json: one object per file, the problems with where and message.
set +e
"$bin/sagactl" validate --json sagas/order.json "$work/bad.json" >"$work/v.json"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "validate --json of a bad file exited $rc, expected 1"
python3 - "$work/v.json" <<'PY' || fail "validate --json has not the documented shape"
import json, sys
files = json.load(open(sys.argv[1]))
assert [f["file"] for f in files] == ["sagas/order.json", sys.argv[1].replace("v.json", "bad.json")], files
good, bad = files
assert good["ok"] is True and good["saga"] == "order" and good["steps"] == 4, good
assert good["problems"] == [] and good["more_problems"] == 0, good
assert bad["ok"] is False and bad["saga"] is None and bad["steps"] is None, bad
assert any(p["where"] == "steps[0]" and p["message"].startswith('unknown key "acton"')
           for p in bad["problems"]), bad
assert any(p["where"] == "steps[0].action" and p["message"].startswith("missing")
           for p in bad["problems"]), bad
assert all(set(p) == {"where", "message"} for p in bad["problems"]), bad
PY

# Malformed options are usage errors (exit 2) that name the command and the
# option, found before any database is asked (this one cannot be reached).
usage_error() { # want-substring args...
    local want=$1 rc
    shift
    set +e
    SAGA_PG_URL=postgresql://nobody@127.0.0.1:1/x "$bin/sagactl" "$@" >/dev/null 2>"$work/err"
    rc=$?
    set -e
    [[ $rc -eq 2 ]] || fail "sagactl $* exited $rc, expected 2: $(cat "$work/err")"
    grep -qF -- "$want" "$work/err" || fail "sagactl $* did not say: $want (said: $(cat "$work/err"))"
}
id=00000000-0000-4000-8000-000000000000
usage_error 'list: --limit needs a whole number from 1 to 100000, not "10abc"' list --limit 10abc
usage_error 'list: --limit needs a whole number from 1 to 100000, not "99999999999"' list --limit 99999999999
usage_error 'list: --limit needs a whole number' list --limit -3
usage_error 'list: --status needs a value' list --status
usage_error 'list: --since needs a duration such as 10m or 2h, not "1d"' list --since 1d
usage_error 'list: --older-than "99999999h" is too long (at most 3650 days)' list --older-than 99999999h
usage_error 'stuck: --older-than needs a value' stuck --older-than
usage_error 'wait: --timeout needs a duration' wait $id --timeout soon
usage_error 'retry: --reason needs a value' retry $id --reason
usage_error 'retry: --reason is required' retry $id
usage_error 'compensate: missing the saga ID' compensate --reason x
usage_error 'resolve: "nope" is not a saga id' resolve nope --reason x
usage_error 'retry: --step is for skip only' retry $id --reason x --step a
usage_error 'skip: --step NAME is required' skip $id --reason x
usage_error 'skip: --output must be a JSON object' skip $id --reason x --step a --output '[1]'
usage_error 'defs show: --version needs a whole number from 1 to 2147483647, not "2x"' defs show order --version 2x
usage_error 'purge: --batch needs a whole number from 1 to 100000, not "5k"' purge --older-than 1d --batch 5k
usage_error 'purge: --older-than "4000d" is too long' purge --older-than 4000d
usage_error '--db needs a value' --db
# getopt_long: --opt=VALUE is the same option as --opt VALUE (also for the
# errors), options may follow operands, unknown ones are named.
usage_error 'list: --limit needs a whole number from 1 to 100000, not "10abc"' list --limit=10abc
usage_error 'purge: --batch needs a whole number from 1 to 100000, not "0"' purge --batch=0 --older-than=1d
usage_error 'list: unknown option "--bogus"' list --bogus
usage_error 'dead list: unknown option "--nope=1"' dead list --nope=1
usage_error 'show: unexpected argument "extra"' show $id extra
usage_error 'retry: --reason is required' retry $id --reason=
usage_error 'help: unknown command "nope"' help nope
usage_error 'unknown command "nope"' nope
# Accepted both ways: past option parsing, so they fail at the database
# (exit 3), not as usage errors.
reaches_db() {
    local rc
    set +e
    SAGA_PG_URL=postgresql://nobody@127.0.0.1:1/x "$bin/sagactl" "$@" >/dev/null 2>"$work/err"
    rc=$?
    set -e
    [[ $rc -eq 3 ]] || fail "sagactl $* exited $rc, expected 3 (database): $(cat "$work/err")"
}
reaches_db list --limit 5
reaches_db list --limit=5 --status=failed --since=10m
reaches_db list --json --older-than 2h
reaches_db --db=postgresql://nobody@127.0.0.1:1/x stats
reaches_db show --json $id
reaches_db dead list --limit=5 --source=reply
reaches_db defs show order --version=2
reaches_db limits set max_input_bytes 1000 --reason=test --as=ci
# One table drives the listing and `help COMMAND`: every command is listed,
# and each answers help (exit 0, its own usage line).
"$bin/sagactl" help >"$work/help"
for cmd in list stuck stats show history wait retry compensate skip resolve start migrate \
    validate defs limits purge dead; do
    grep -qE "^  $cmd( |\$)" "$work/help" || fail "sagactl help does not list $cmd"
    "$bin/sagactl" help "$cmd" >"$work/help1" || fail "sagactl help $cmd failed"
    grep -q "sagactl $cmd" "$work/help1" || fail "sagactl help $cmd: no usage line"
    "$bin/sagactl" "$cmd" --help >"$work/help2" || fail "sagactl $cmd --help failed"
    cmp -s "$work/help1" "$work/help2" || fail "sagactl help $cmd and $cmd --help differ"
done

mkdir "$work/defs"
cp "$work/bad.json" "$work/defs/"
set +e
SAGA_PG_URL=postgresql://nobody@127.0.0.1:1/x SAGA_KAFKA_BROKERS=127.0.0.1:1 SAGA_LOG_FORMAT=human \
    "$bin/sagad" --definitions "$work/defs" 2>"$work/sagad.out"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "sagad with an invalid definition exited $rc, expected 1"
grep -q "refusing to start" "$work/sagad.out" && grep -qF 'unknown key "acton"' "$work/sagad.out" ||
    fail "sagad did not say why it refused"
echo "test_cli_validation: validate (also --json) and sagad report every problem and refuse ($checked invalid files, each message exact); malformed sagactl options are usage errors"
