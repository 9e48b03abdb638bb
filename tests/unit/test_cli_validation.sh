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

"$bin/sagactl" validate sagas/*.json >/dev/null || fail "the shipped definitions do not validate"
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
echo "test_cli_validation: validate and sagad report every problem and refuse"
