#!/usr/bin/env bash
# The HTTP API's client examples (examples/api/: Python and Go, standard
# libraries only, docs/API.md) against a real sagad with a starter token.
# First their own checks: the Python one passes mypy --strict and its
# pytest tests, the Go one is gofmt'd, go vet-clean and passes go test
# (both: a 503 retried with the same Idempotency-Key, a problem document
# shown and not retried). Then each starts 3 "order" sagas with business
# keys, starts the first again (the same saga), waits for each (GET
# /v1/sagas/{id}?wait=) and finds the first by its business key; checked
# here too: every saga it printed is completed in the database with its
# key, and GET /v1/sagas?business_key= finds it alone. With an unknown
# token each exits 1 showing the 401 problem.
# mypy and pytest (pinned) live in build/venv-examples, Go's caches in
# build/go-examples: made once, then reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/api-examples-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
db=it_apiex_$$
export SAGA_PG_URL="postgresql://$user@$hostport/$db" SAGA_TOPIC_PREFIX="apiex$$."
admin="postgresql://$user@$hostport/postgres"
pids=()
count=3 # sagas per example (examples/seed.sql: 10 widgets in stock)
fail() { echo "test_api_examples: FAIL: $*" >&2; exit 1; }
ok() { echo "test_api_examples: ok: $*"; }
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $rc -ne 0 ]] && tail -n 20 "$work"/*.log >&2 2>/dev/null
    psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

# ---- static checks first: they need no server
export PYTHONDONTWRITEBYTECODE=1
venv=$PWD/build/venv-examples pins="mypy==2.4.1 pytest==9.2.0"
if [[ $(cat "$venv/pins" 2>/dev/null) != "$pins" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "python3 -m venv failed (install python3-venv)"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $pins || fail "pip could not install $pins"
    echo "$pins" >"$venv/pins"
fi
"$venv/bin/mypy" --strict --cache-dir "$venv/mypy-cache" examples/api/python >"$work/mypy.log" 2>&1 ||
    fail "mypy --strict: $(cat "$work/mypy.log")"
"$venv/bin/pytest" -q -p no:cacheprovider examples/api/python >"$work/pytest.log" 2>&1 ||
    fail "pytest: $(cat "$work/pytest.log")"
ok "Python: mypy --strict clean, $(tail -n 1 "$work/pytest.log")"

PATH=$PATH:/usr/local/go/bin # where the official archive puts it
command -v go >/dev/null || fail "no go on PATH (Go 1.19 or later)"
export GOCACHE=$PWD/build/go-examples/cache GOPATH=$PWD/build/go-examples/path \
    GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local
unformatted=$(gofmt -l examples/api/go)
[[ -z $unformatted ]] || fail "not gofmt'd: $unformatted"
(cd examples/api/go && go vet ./... && go test -count=1 ./...) >"$work/go.log" 2>&1 ||
    fail "go vet / go test: $(cat "$work/go.log")"
ok "Go: gofmt'd, go vet clean, go test: $(tail -n 1 "$work/go.log") ($(go env GOVERSION))"

# ---- the services and sagad, as test_api.sh starts them
psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
"$bin/sagactl" migrate --dir migrations >/dev/null
it_name=api_examples
# shellcheck source=tests/integration/it_lib.sh
source tests/integration/it_lib.sh # it_services, it_sagad (this test cleans up itself)
it_services
it_sagad sagas
pids+=("$sagad_pid")
port=${base##*:}
token=$("$bin/sagactl" tokens create --role starter --name examples 2>/dev/null) || fail "tokens create"
export SAGA_API_URL=http://127.0.0.1:$port SAGA_API_TOKEN=$token

# check NAME PREFIX: the example's output ($work/NAME.out) is one line
# "ID KEY completed" per saga, keys PREFIX0..; the database agrees, and the
# API's search by key finds each; the last line is the example's search.
check() {
    local name=$1 prefix=$2 id key status n=0
    while read -r id key status; do
        [[ $key == "$prefix$n" && $status == completed ]] || fail "$name: $id $key $status"
        [[ $(psql "$SAGA_PG_URL" -Atc "SELECT business_key || ' ' || status FROM saga.saga WHERE id = '$id'") == "$key completed" ]] ||
            fail "$name: the database does not have $id as completed with key $key"
        curl -fsS -H "Authorization: Bearer $token" "$SAGA_API_URL/v1/sagas?business_key=$key" >"$work/search.json" ||
            fail "$name: search by $key"
        python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["sagas"]; assert [x["id"] for x in s] == [sys.argv[2]], s' \
            "$work/search.json" "$id" || fail "$name: the search by $key: $(cat "$work/search.json")"
        n=$((n + 1))
    done < <(head -n "$count" "$work/$name.out")
    [[ $n == "$count" ]] || fail "$name: $n sagas shown, not $count: $(cat "$work/$name.out")"
    [[ $(sed -n "$((count + 1))p" "$work/$name.out") == "business key ${prefix}0: $(head -n 1 "$work/$name.out" | cut -d' ' -f1)" ]] ||
        fail "$name: its own search: $(cat "$work/$name.out")"
}

# ---- the examples, each starting $count sagas
t0=$(date +%s%N)
python3 -I -B examples/api/python/saga_http_example.py "$count" >"$work/python.out" 2>"$work/python.log" ||
    fail "the Python example: $(cat "$work/python.out" "$work/python.log")"
check python "$(sed -nE '1s/^[^ ]+ (order-py-[0-9a-f]+-)0 .*/\1/p' "$work/python.out")"
ok "Python: $count sagas started (a retry gave the same saga), each completed, found by its business key ($((($(date +%s%N) - t0) / 1000000)) ms)"

t0=$(date +%s%N)
(cd examples/api/go && go run . "$count") >"$work/go.out" 2>"$work/go-run.log" ||
    fail "the Go example: $(cat "$work/go.out" "$work/go-run.log")"
check go "$(sed -nE '1s/^[^ ]+ (order-go-[0-9a-f]+-)0 .*/\1/p' "$work/go.out")"
ok "Go: $count sagas started (a retry gave the same saga), each completed, found by its business key ($((($(date +%s%N) - t0) / 1000000)) ms)"

# ---- a problem is shown, and the exit status says so
if SAGA_API_TOKEN=sgt_nothing python3 -I -B examples/api/python/saga_http_example.py 1 >/dev/null 2>"$work/python.log"; then
    fail "the Python example passed with an unknown token"
fi
grep -q "HTTP 401 unauthorized: " "$work/python.log" || fail "the Python example's 401: $(cat "$work/python.log")"
if (cd examples/api/go && SAGA_API_TOKEN=sgt_nothing go run . 1) >/dev/null 2>"$work/go-run.log"; then
    fail "the Go example passed with an unknown token"
fi
grep -q "HTTP 401 unauthorized: " "$work/go-run.log" || fail "the Go example's 401: $(cat "$work/go-run.log")"
ok "an unknown token: both exit 1 with the problem's status, code and detail"

[[ $(psql "$SAGA_PG_URL" -Atc "SELECT count(*) FROM saga.saga WHERE started_by = 'token:examples' AND status = 'completed'") == $((2 * count)) ]] ||
    fail "not $((2 * count)) completed sagas started by token:examples"
echo "test_api_examples: passed"
