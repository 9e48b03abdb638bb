#!/usr/bin/env bash
# A participant in another language, written from docs/PROTOCOL.md alone
# (tests/interop/participant.py, Python with confluent-kafka), runs in
# sagas driven by sagad: one completes, one is compensated.
# Needs SAGA_PG_URL, SAGA_KAFKA_BROKERS and SAGA_BUILD_DIR (run-tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SAGA_PG_URL:?}" "${SAGA_KAFKA_BROKERS:?}" "${SAGA_BUILD_DIR:?}"
bin=$SAGA_BUILD_DIR/bin
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test_interop_python: $*" >&2; tail -n 20 "$work"/*.log >&2 2>/dev/null || true; exit 1; }

# The Python client library, in a virtualenv cached between runs.
venv=${SAGA_CACHE_DIR:-$HOME/.cache/saga-orchestrator}/venv-interop
if ! "$venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "python3 -m venv failed (install python3-venv)"
    "$venv/bin/pip" install -q confluent-kafka==2.16.1 || fail "pip could not install confluent-kafka"
fi

db="it_interop_$$"
PGOPTIONS="-c client_min_messages=warning" psql -q "$SAGA_PG_URL" \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
export SAGA_PG_URL="${SAGA_PG_URL%/*}/$db"
export SAGA_TOPIC_PREFIX="it$$-py."
"$bin/sagactl" migrate --dir migrations >/dev/null || fail "migrate failed"
"$bin/sagad" --definitions tests/interop >"$work/sagad.log" 2>&1 &
pids+=($!)
"$venv/bin/python" tests/interop/participant.py >"$work/python.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    grep -q "sagad running" "$work/sagad.log" && grep -q "pyhello: ready" "$work/python.log" && break
    sleep 0.2
done
ok=$("$bin/sagactl" start pyhello --input '{"name":"Grace"}') || fail "start failed"
no=$("$bin/sagactl" start pyrefuse --input '{"name":"Linus"}') || fail "start failed"
s1=$("$bin/sagactl" wait "$ok" --timeout 60s) || fail "pyhello saga: $s1"
s2=$("$bin/sagactl" wait "$no" --timeout 60s) || fail "pyrefuse saga: $s2"
[[ $s1 == completed && $s2 == compensated ]] || fail "expected completed and compensated, got $s1 and $s2"
greeting=$("$bin/sagactl" show --json "$ok" |
           "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["steps"][0]["output"]["greeting"])')
[[ $greeting == "Hello, Grace, from Python" ]] || fail "unexpected output: $greeting"
steps=$("$bin/sagactl" show --json "$no" |
        "$venv/bin/python" -c 'import json,sys; print(",".join(s["name"]+"="+s["status"] for s in json.load(sys.stdin)["steps"]))')
[[ $steps == "greet=compensated,refuse=failed" ]] || fail "unexpected steps: $steps"
echo "test_interop_python: Python participant: $ok completed ($greeting), $no compensated ($steps)"
