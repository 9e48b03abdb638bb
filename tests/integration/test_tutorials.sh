#!/usr/bin/env bash
# The 5-minute tutorials (issue 16 item 6), run exactly as printed:
# docs/TUTORIAL-PYTHON.md and docs/TUTORIAL-GO.md. From each page, every
# block after `<!-- tutorial-file: NAME -->` is written to NAME in a folder
# of its own, and the blocks after `<!-- tutorial-run -->` are run there,
# in order, with bash -e, against a real sagad started on that folder (its
# signup.json: two steps served by the tutorial's participant), PostgreSQL
# and Kafka — the environment the page's set-up blocks make (SAGA_PG_URL,
# SAGA_KAFKA_BROKERS, SAGA_API_URL, REPO; a database and a topic prefix of
# the tutorial's own here). Checked: the outputs the page's comments
# promise (a saga completed, one compensated), the accounts table, that
# the participant stops gracefully; the Python files pass mypy --strict,
# the Go ones are gofmt'd and main.go (two actions and their
# compensations) is under 80 lines. Reuses build/venv-sdk and build/go-sdk.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/tutorials-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
admin="postgresql://$user@$hostport/postgres"
dbs=()
sagad=
t0=$SECONDS
fail() { echo "test_tutorials: FAIL: $*" >&2; exit 1; }
ok() { echo "test_tutorials: ok ($((SECONDS - t0)) s): $*"; }
cleanup() {
    local rc=$?
    [[ -n $sagad ]] && kill -TERM "$sagad" 2>/dev/null && wait "$sagad" 2>/dev/null
    [[ $rc -ne 0 ]] && tail -n 30 "$work"/*/*.log >&2 2>/dev/null
    for db in "${dbs[@]}"; do
        psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
venv=$PWD/build/venv-sdk
sdk/python/scripts/venv.sh "$venv" "$work/pip.log" >/dev/null || fail "the virtualenv (sdk/python/scripts/venv.sh)"
PATH=$PATH:/usr/local/go/bin # where the official archive puts it
command -v go >/dev/null || fail "no go on PATH (Go 1.26 or later)"
export GOCACHE=$root/build/go-sdk/cache GOPATH=$root/build/go-sdk/path \
    GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOMAXPROCS=2

# extract PAGE DIR: the page's files into DIR, its commands into DIR/run.sh
extract() {
    mkdir -p "$2"
    awk -v dir="$2" '
        /^<!-- tutorial-file: [^ ]+ -->$/ { file = dir "/" $3; next }
        /^<!-- tutorial-run -->$/ { file = dir "/run.sh"; append = 1; next }
        file != "" && /^```/ && !inside { inside = 1; n[file]++; next }
        inside && /^```$/ { inside = 0; file = ""; next }
        inside {
            if (!seen[file]++ && file !~ /run\.sh$/) { d = file; sub(/\/[^\/]*$/, "", d); system("mkdir -p " d) }
            print > file
        }' "$1"
    [[ -s $2/run.sh && -s $2/signup.json ]] || fail "$1: no run block or no signup.json"
}

# tutorial NAME PAGE: run the page against a sagad, PostgreSQL and Kafka
tutorial() {
    local name=$1 page=$2 dir=$work/$1 db=it_tutorial_$1_$$
    export SAGA_PG_URL="postgresql://$user@$hostport/$db" SAGA_TOPIC_PREFIX="tut$1$$."
    psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
    dbs+=("$db")
    "$bin/sagactl" migrate --dir migrations >/dev/null
    "$bin/sagad" --definitions "$dir" --http 127.0.0.1:0 >"$dir/sagad.log" 2>&1 &
    sagad=$!
    for _ in $(seq 1 600); do grep -qs "sagad running" "$dir/sagad.log" && break; sleep 0.1; done
    grep -q "definition signup: new version stored" "$dir/sagad.log" ||
        fail "$page: sagad did not take signup.json: $(cat "$dir/sagad.log")"
    local port
    port=$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$dir/sagad.log" | sed 's/.*://') ||
        fail "sagad did not say where it serves the API"
    (cd "$dir" && SAGA_API_URL=http://127.0.0.1:$port REPO=$root PATH=$venv/bin:$PATH \
        timeout 180 bash -e -o pipefail run.sh) >"$dir/run.log" 2>&1 ||
        fail "$page, as printed: $(tail -n 20 "$dir/run.log")"
    grep -qx "ann@example.com: completed" "$dir/run.log" || fail "$page: ann's saga: $(cat "$dir/run.log")"
    grep -qx "bob@example.com: compensated" "$dir/run.log" || fail "$page: bob's saga: $(cat "$dir/run.log")"
    [[ $(psql "$SAGA_PG_URL" -Atc "SELECT email || ' ' || trial_days FROM accounts.accounts") == "ann@example.com 14" ]] ||
        fail "$page: accounts: $(psql "$SAGA_PG_URL" -Atc "SELECT * FROM accounts.accounts")"
    grep -q "accounts: ready" "$dir/run.log" || fail "$page: the participant never got ready"
    [[ $(psql "$SAGA_PG_URL" -Atc "SELECT string_agg(status, ',' ORDER BY status) FROM saga.saga") == compensated,completed ]] ||
        fail "$page: sagas: $(psql "$SAGA_PG_URL" -Atc "SELECT id, status FROM saga.saga")"
    kill -TERM "$sagad" && wait "$sagad" || fail "$page: sagad exited $?"
    sagad=
}

# ---- Python
extract docs/TUTORIAL-PYTHON.md "$work/py"
"$venv/bin/mypy" --strict --cache-dir "$venv/mypy-cache" "$work/py/accounts.py" "$work/py/signup.py" \
    >"$work/py/mypy.log" 2>&1 || fail "docs/TUTORIAL-PYTHON.md: mypy --strict: $(cat "$work/py/mypy.log")"
tutorial py docs/TUTORIAL-PYTHON.md
ok "docs/TUTORIAL-PYTHON.md as printed: accounts.py ($(wc -l <"$work/py/accounts.py") lines, mypy --strict clean) served the signup saga: ann's completed, bob's compensated"

# ---- Go
extract docs/TUTORIAL-GO.md "$work/go"
lines=$(wc -l <"$work/go/main.go")
[[ $lines -lt 80 ]] || fail "docs/TUTORIAL-GO.md's participant is $lines lines, not under 80"
unformatted=$(gofmt -l "$work/go")
[[ -z $unformatted ]] || fail "docs/TUTORIAL-GO.md: not gofmt'd: $unformatted"
tutorial go docs/TUTORIAL-GO.md
ok "docs/TUTORIAL-GO.md as printed: main.go ($lines lines: two actions and their compensations, gofmt'd) built and served the signup saga: ann's completed, bob's compensated"
echo "test_tutorials: passed in $((SECONDS - t0)) s"
