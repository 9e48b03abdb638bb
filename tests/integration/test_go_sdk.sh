#!/usr/bin/env bash
# The Go SDK (sdk/go, docs/SDK-GO.md): gofmt'd, go vet-clean, its unit tests
# (the shared vectors of tests/vectors and tests/data/sign included), then
# against a real sagad, Kafka and PostgreSQL with the C example services
# order and payment and the Go inventory participant (sdk/go/cmd/inventory-go):
#   1. Go alone: the order saga to completion and through compensation,
#      replies on the partition librdkafka gives their key, every command
#      produced twice absorbed, a null compensation and a hanging action;
#   2. C alone on the same database: it answers a duplicate from Go's
#      barrier row, refuses the action Go blocked, blocks one for Go;
#   3. Go again: refuses the action C blocked, compensates by hand;
#   4. one C and one Go instance in one consumer group (franz-go set to
#      librdkafka's assignors): both own partitions, 12 sagas complete,
#      each reserved once, both did some.
# Go's caches live in build/go-sdk (GOFLAGS=-mod=mod: modules from the
# proxy, pinned by sdk/go/go.sum).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/go-sdk-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
db=it_gosdk_$$
admin="postgresql://$user@$hostport/postgres"
pids=()
fail() { echo "test_go_sdk: FAIL: $*" >&2; exit 1; }
ok() { echo "test_go_sdk: ok: $*"; }
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $rc -ne 0 ]] && tail -n 30 "$work"/*.log >&2 2>/dev/null
    psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

PATH=$PATH:/usr/local/go/bin # where the official archive puts it
command -v go >/dev/null || fail "no go on PATH (Go 1.26 or later: franz-go 1.22 needs it)"
export GOCACHE=$root/build/go-sdk/cache GOPATH=$root/build/go-sdk/path \
    GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOMAXPROCS=2
unformatted=$(gofmt -l sdk/go)
[[ -z $unformatted ]] || fail "not gofmt'd: $unformatted"
(cd sdk/go && go vet ./... && go test -p 2 -count=1 ./...) >"$work/go.log" 2>&1 ||
    fail "go vet / go test: $(cat "$work/go.log")"
ok "gofmt'd, go vet clean, go test: $(grep -c '^ok' "$work/go.log") packages ($(go env GOVERSION))"
(cd sdk/go && go build -o "$work/inventory-go" ./cmd/inventory-go && go test -c -o "$work/e2e.test" .) ||
    fail "go build"

# ---- the services and sagad, as test_api.sh starts them
export SAGA_PG_URL="postgresql://$user@$hostport/$db" SAGA_TOPIC_PREFIX="gosdk$$."
psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
"$bin/sagactl" migrate --dir migrations >/dev/null
declare -A pid
start() { # NAME COMMAND...: started in the background, waited for "ready"
    local name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
    pids+=($!)
    for _ in $(seq 1 600); do grep -qs ready "$work/$name.log" && return; sleep 0.1; done
    fail "$name did not start: $(cat "$work/$name.log")"
}
stop() { # NAME: SIGTERM, and its "stopped" line
    kill -TERM "${pid[$1]}"
    wait "${pid[$1]}" || fail "$1 exited $?: $(tail -n 5 "$work/$1.log")"
}
start order "$bin/order-service"
start payment "$bin/payment-service"
start inventory-go "$work/inventory-go"
psql "$SAGA_PG_URL" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
"$bin/sagad" --definitions sagas --http 127.0.0.1:0 >"$work/sagad.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do grep -qs "sagad running" "$work/sagad.log" && break; sleep 0.1; done
port=$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$work/sagad.log" | sed 's/.*://') ||
    fail "sagad did not say where it serves the API"
export SAGA_API_URL=http://127.0.0.1:$port SAGA_GO_E2E=1 SAGA_GO_E2E_STATE=$work/state

e2e() { # TEST: one stage of sdk/go/e2e_test.go
    (cd sdk/go && "$work/e2e.test" -test.run "^$1\$" -test.count=1 -test.v) >"$work/$1.log" 2>&1 ||
        fail "$1: $(grep -v '^=== RUN' "$work/$1.log" | tail -n 20)"
    grep -q -- "--- PASS: $1" "$work/$1.log" || fail "$1 did not run: $(cat "$work/$1.log")"
}
e2e TestE2EGo
stop inventory-go
grep -q "stopped: .* [1-9][0-9]* duplicates, 1 null compensations, 1 hanging refused" "$work/inventory-go.log" ||
    fail "inventory-go's figures: $(grep stopped "$work/inventory-go.log")"
ok "Go inventory: the order saga completed and compensated, replies on librdkafka's partitions with traceparent, duplicates absorbed, null compensation and hanging action; stopped gracefully: $(grep -o 'stopped: .*' "$work/inventory-go.log")"

start inventory-c "$bin/inventory-service"
e2e TestE2EC
stop inventory-c
grep -q "stopped: .*, 1 duplicates, 1 null compensations, 1 hanging refused" "$work/inventory-c.log" ||
    fail "inventory-service's figures: $(grep stopped "$work/inventory-c.log")"
start inventory-go "$work/inventory-go"
e2e TestE2EGoAfterC
ok "one barrier table, two languages: C answered a duplicate from Go's row and refused the action Go blocked; Go refused the action C blocked"

start inventory-c "$bin/inventory-service"
go_before=$(grep -c "^invoke reserve_stock" "$work/inventory-go.log" || true)
e2e TestE2EMixed
c_n=$(grep -c "^invoke reserve_stock" "$work/inventory-c.log" || true)
go_n=$(($(grep -c "^invoke reserve_stock" "$work/inventory-go.log" || true) - go_before))
[[ $c_n -gt 0 && $go_n -gt 0 ]] || fail "one instance did all the work: C $c_n, Go $go_n reserve_stock commands"
ok "a C and a Go instance in consumer group saga-svc-inventory ($(grep -o 'group saga-svc-inventory:.*' "$work/TestE2EMixed.log")): 12 sagas completed, each reserved once; C handled $c_n, Go $go_n of them"
echo "test_go_sdk: passed"
