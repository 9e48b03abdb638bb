# it_lib.sh - what the shell integration tests share (sourced, not run):
# a database and topic prefix of their own, the example services, sagad
# on an ephemeral port, cleanup on exit (also on failure, with the logs'
# last lines), and ok/fail lines in the tests' format.
#
#   source tests/integration/it_lib.sh
#   it_init NAME            # before anything else; cd to the repository
#   it_services [SVC...]    # order payment inventory by default, seeded
#   it_sagad DIR [ARGS...]  # sagad on 127.0.0.1:0; $base is its URL
#
# Sets: bin (the binaries), work (a folder for the test's files), db,
# admin (the maintenance database's URL), hostport, user, base; exports
# SAGA_PG_URL (the test's database) and SAGA_TOPIC_PREFIX. pids holds the
# processes cleanup stops; sagad_pid is sagad's. A test may define
# it_atexit for what else to undo.

it_init() { # NAME
    it_name=$1
    cd "$(dirname "${BASH_SOURCE[0]}")/../.."
    bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
    : "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
    : "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
    work=$PWD/${SAGA_BUILD_DIR:-build}/tests/$it_name-$$
    mkdir -p "$work"
    hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
    user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
    db=it_${it_name//-/_}_$$
    admin="postgresql://$user@$hostport/postgres"
    export SAGA_PG_URL="postgresql://$user@$hostport/$db"
    export SAGA_TOPIC_PREFIX="${it_name//_/}$$."
    pids=()
    sagad_pid=
    trap it_cleanup EXIT
    psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
    "$bin/sagactl" migrate --dir migrations >/dev/null
}

fail() { echo "test_$it_name: FAIL: $*" >&2; exit 1; }
ok() { echo "test_$it_name: ok: $*"; }

it_cleanup() {
    local rc=$?
    for p in "${pids[@]}" $sagad_pid; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}" $sagad_pid; do wait "$p" 2>/dev/null || true; done
    [[ $rc -ne 0 ]] && tail -n 20 "$work"/*.log >&2 2>/dev/null
    # A test's own things to undo (roles it created, say): it_atexit.
    if declare -F it_atexit >/dev/null; then it_atexit || true; fi
    psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
    return $rc
}

# Start SVC-service for each (default: order payment inventory), each
# with the environment it_env_SVC names if set (e.g. it_env_order=
# "SAGA_EXAMPLE_DELAY_MS=1000"), wait until each is ready, seed the demo
# data. Their pids go to pids.
it_services() {
    local svcs=("$@") var
    ((${#svcs[@]})) || svcs=(order payment inventory)
    for svc in "${svcs[@]}"; do
        var=it_env_$svc
        # shellcheck disable=SC2086
        env ${!var:-} "$bin/$svc-service" >"$work/$svc.log" 2>&1 &
        pids+=($!)
    done
    for svc in "${svcs[@]}"; do
        for _ in $(seq 1 600); do grep -q ready "$work/$svc.log" && break; sleep 0.1; done
        grep -q ready "$work/$svc.log" || fail "$svc-service did not start"
    done
    psql "$SAGA_PG_URL" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null
}

# sagad with the definitions in DIR, its HTTP listener on an ephemeral
# loopback port (base: its URL), and ARGS; waits until it runs.
it_sagad() { # DIR [ARGS...]
    local dir=$1
    shift
    "$bin/sagad" --definitions "$dir" --http 127.0.0.1:0 "$@" >"$work/sagad.log" 2>&1 &
    sagad_pid=$!
    for _ in $(seq 1 600); do grep -q "sagad running" "$work/sagad.log" && break; sleep 0.1; done
    grep -q "sagad running" "$work/sagad.log" || fail "sagad did not start"
    base="http://$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$work/sagad.log" | sed 's/.* on //')"
}
