#!/usr/bin/env bash
# The HTTP API against its own contract: orchestrator/api/openapi.json,
# the OpenAPI 3.1 document sagad serves at GET /v1/openapi.json. The
# document must be valid OpenAPI (openapi-spec-validator), sagad must
# serve exactly it without a token, and schemathesis, run against a real
# sagad with an operator token, must find nothing: every operation gets
# its examples, boundary values (coverage), generated valid and invalid
# requests (fuzzing, bounded by SAGA_SCHEMA_EXAMPLES per operation) and
# sequences that follow the document's links (stateful: start a saga,
# then read, repair it), with every check schemathesis has (no 5xx, only
# documented statuses, content types and headers, bodies matching their
# schemas, invalid requests refused, 405 with Allow, 401 without the
# token). Any finding fails the test. Not checked: that every valid
# request is accepted (positive_data_acceptance), which a document cannot
# promise here: a well-formed start names a definition that may not be
# deployed (422), a well-formed repair meets a saga that may refuse it
# (409).
#
# schemathesis (pinned below) lives in a virtualenv made once under
# build/venv-api and reused (pip needs PyPI the first time).
#   SAGA_SCHEMA_EXAMPLES  generated cases per operation (default 50)
#   SAGA_SCHEMA_SEED      hypothesis seed (default 1: the same run every time)
#   SAGA_SCHEMA_ARGS      more options for schemathesis run (e.g.
#                         "--include-path /v1/repairs --report har")
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$PWD/${SAGA_BUILD_DIR:-build}/bin
: "${SAGA_PG_URL:?run through make check (or scripts/with-services)}"
: "${SAGA_KAFKA_BROKERS:?run through make check (or scripts/with-services)}"
doc=$PWD/orchestrator/api/openapi.json
pins=("schemathesis==4.32.5" "openapi-spec-validator==0.7.2")
venv=$PWD/build/venv-api
work=$PWD/${SAGA_BUILD_DIR:-build}/tests/api-schema-$$
mkdir -p "$work"
hostport=$(sed -E 's#^[a-z]+://([^@]*@)?([^/?]*).*#\2#' <<<"$SAGA_PG_URL")
user=$(sed -E 's#^[a-z]+://([^@:]*).*#\1#' <<<"$SAGA_PG_URL")
db=it_api_schema_$$
export SAGA_PG_URL="postgresql://$user@$hostport/$db" SAGA_TOPIC_PREFIX="apischema$$."
admin="postgresql://$user@$hostport/postgres"
pids=()
fail() { echo "test_api_schema: FAIL: $*" >&2; exit 1; }
ok() { echo "test_api_schema: ok: $*"; }
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $rc -ne 0 ]] && tail -n 20 "$work"/*.log >&2 2>/dev/null
    psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT

# ---- schemathesis, in its virtualenv (made once; again when the pins change)
want=$(printf '%s\n' "${pins[@]}")
make_venv() {
    [[ -x $venv/bin/schemathesis && $(cat "$venv/.pins" 2>/dev/null) == "$want" ]] && return 0
    echo "test_api_schema: installing ${pins[*]} into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}" || return 1
    printf '%s\n' "$want" >"$venv/.pins"
}
mkdir -p "$(dirname "$venv")"
# Two runs (of two builds) may want it at once: one makes it.
exec 9>"$venv.lock"
command -v flock >/dev/null && flock 9
make_venv || fail "cannot install ${pins[*]} (pip needs PyPI)"
exec 9>&-
"$venv/bin/openapi-spec-validator" "$doc" >"$work/validate.log" 2>&1 ||
    fail "orchestrator/api/openapi.json is not valid OpenAPI: $(tail -n 5 "$work/validate.log")"
ok "orchestrator/api/openapi.json is valid OpenAPI $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["openapi"])' "$doc")"

# ---- a database, the example services and sagad, as test_api.sh has them
psql "$admin" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
"$bin/sagactl" migrate --dir migrations >/dev/null
it_name=api_schema
# shellcheck source=tests/integration/it_lib.sh
source tests/integration/it_lib.sh # it_services, it_sagad (this test cleans up itself)
it_services
it_sagad sagas
pids+=("$sagad_pid")
token=$("$bin/sagactl" tokens create --role operator --name schema 2>/dev/null)
[[ $token == sgt_* ]] || fail "no operator token: $token"

findings=()

# ---- the document sagad serves: this one, to anyone (no token)
status=$(curl -sS -o "$work/served.json" -D "$work/served.h" -w '%{http_code}' "$base/v1/openapi.json")
type=$(grep -i '^content-type:' "$work/served.h" | sed 's/^[^:]*: *//' | tr -d '\r')
if [[ $status != 200 || $type != application/json* ]]; then
    findings+=("GET /v1/openapi.json without a token: $status $type, not 200 application/json")
elif ! cmp -s "$work/served.json" "$doc"; then
    findings+=("GET /v1/openapi.json is not orchestrator/api/openapi.json (sagad built from another?)")
else
    ok "GET /v1/openapi.json: 200 application/json, without a token, byte for byte the repository's document"
fi

# ---- schemathesis
# A long poll (GET /v1/sagas/{id}?wait=) may last its whole wait, up to
# 5m: valid waits are cut to 2s so that the run stays short (invalid ones
# are sent as they are, to be refused).
cat >"$work/hooks.py" <<'PY'
import re
import schemathesis

UNIT = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}


@schemathesis.hook
def before_call(context, case, **kwargs):
    wait = (case.query or {}).get("wait")
    if not isinstance(wait, str) or not re.fullmatch(r"([0-9]+(ms|s|m|h))+", wait):
        return
    ms = sum(int(n) * UNIT[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", wait))
    if 2000 < ms <= 300000:
        case.query["wait"] = "2s"
PY
# One worker: with two, CPython 3.11's ast.parse from two threads at once
# sometimes fails inside schemathesis ("SystemError: AST constructor
# recursion depth mismatch", a runtime error of the tool, not a finding).
# In $work: schemathesis keeps its caches (.hypothesis, .schemathesis: the
# failures of earlier runs, replayed first) in the current directory, and
# each run starts afresh.
read -r -a extra <<<"${SAGA_SCHEMA_ARGS-}"
set +e
(cd "$work" && CI=true SCHEMATHESIS_HOOKS="$work/hooks.py" timeout 900 \
    "$venv/bin/schemathesis" run "$doc" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "${SAGA_SCHEMA_EXAMPLES:-50}" \
    --seed "${SAGA_SCHEMA_SEED:-1}" \
    --workers 1 \
    --request-timeout 30 \
    --generation-database none \
    --generation-allow-x00 false \
    --suppress-health-check all \
    --no-color \
    --report junit --report-dir "$work/report" \
    ${extra[@]+"${extra[@]}"}) >"$work/schemathesis.out" 2>&1
rc=$?
set -e
cat "$work/schemathesis.out"
if [[ $rc -ne 0 ]]; then
    findings+=("schemathesis found problems (exit $rc): see its report above")
else
    ok "schemathesis: every operation, every check, nothing found ($(grep -E -m 1 "[0-9]+ generated" "$work/schemathesis.out" | tr -s " " | sed "s/^ //"))"
fi

# sagad is still fine.
[[ $(curl -sS -o /dev/null -w '%{http_code}' "$base/readyz") == 200 ]] ||
    findings+=("/readyz is not 200 after the run")
kill -0 "${pids[-1]}" 2>/dev/null || findings+=("sagad is gone after the run")

if [[ ${#findings[@]} -gt 0 ]]; then
    printf 'test_api_schema: finding: %s\n' "${findings[@]}" >&2
    fail "${#findings[@]} finding(s)"
fi
echo "test_api_schema: passed"
