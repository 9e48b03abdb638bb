#!/usr/bin/env bash
# The SDK as a user gets it: `make install` into a scratch prefix, the
# tutorial participant of docs/SDK.md built out of tree with
# `pkg-config --cflags --libs libsaga`, and run in a saga by sagad that
# must end `completed`. The doc's code and JSON blocks are the files used.
# Needs SAGA_PG_URL and SAGA_KAFKA_BROKERS (run-tests provides them).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SAGA_PG_URL:?}" "${SAGA_KAFKA_BROKERS:?}"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test_sdk_install: $*" >&2; tail -n 20 "$work"/*.log >&2 2>/dev/null || true; exit 1; }

# 1. The tutorial in docs/SDK.md is, word for word, the file we build.
python3 - docs/SDK.md examples/hello/hello_participant.c <<'PY' || fail "docs/SDK.md and examples/hello/hello_participant.c differ"
import re, sys
doc = open(sys.argv[1]).read()
m = re.search(r"<!-- tutorial: hello_participant.c -->\n```c\n(.*?)```", doc, re.S)
sys.exit(0 if m and m.group(1) == open(sys.argv[2]).read() else 1)
PY
# ... and so is the saga definition it shows.
python3 - docs/SDK.md examples/hello/hello.json <<'PY' || fail "docs/SDK.md's hello.json block and examples/hello/hello.json differ"
import re, sys
doc = open(sys.argv[1]).read()
m = re.search(r"<!-- tutorial: hello.json -->\n```json\n(.*?)```", doc, re.S)
sys.exit(0 if m and m.group(1) == open(sys.argv[2]).read() else 1)
PY

# 2. Install (a normal build, as a user would) and build out of tree. The
# build goes beside the tested one (kept between runs, so it is
# incremental), never into the default build/ that someone may be using.
make --no-print-directory -s -j2 install BUILD="${SAGA_BUILD_DIR:-build}/sdk-install" \
    PREFIX="$work/prefix" >"$work/install.log" 2>&1 || fail "make install failed"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs libsaga) || fail "pkg-config does not know libsaga"
want=$(sed -n 's/^#define SAGA_VERSION_STRING "\(.*\)"$/\1/p' "$work/prefix/include/saga/error.h")
have=$(pkg-config --modversion libsaga)
[[ -n $want && $have == "$want" ]] ||
    fail "installed libsaga.pc says version $have, the installed headers $want"
(cd "$work" && cc -std=c11 -Wall -Wextra -Werror -o hello \
    "$OLDPWD/examples/hello/hello_participant.c" $flags) || fail "the tutorial does not compile"
[[ $(wc -l < examples/hello/hello_participant.c) -lt 60 ]] || fail "the tutorial is 60 lines or more"

# 3. Run it in a saga, on a database of its own.
db="it_sdk_$$"
PGOPTIONS="-c client_min_messages=warning" psql -q "$SAGA_PG_URL" -c "DROP DATABASE IF EXISTS $db" \
    -c "CREATE DATABASE $db" >/dev/null
export SAGA_PG_URL="${SAGA_PG_URL%/*}/$db"
export SAGA_TOPIC_PREFIX="it$$-sdk."
ctl="$work/prefix/bin/sagactl"
"$ctl" migrate --dir migrations >/dev/null || fail "migrate failed"
LD_LIBRARY_PATH="$work/prefix/lib" "$work/hello" >"$work/hello.log" 2>&1 &
pids+=($!)
"$work/prefix/bin/sagad" --definitions examples/hello >"$work/sagad.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    grep -q "sagad running" "$work/sagad.log" && grep -q "hello: ready" "$work/hello.log" && break
    sleep 0.2
done
id=$("$ctl" start hello --input '{"name":"Ada"}') || fail "start failed"
# sagactl wait exits 0 for compensated too: check which end it was.
status=$("$ctl" wait "$id" --timeout 60s) || fail "the saga did not end ($status)"
[[ $status == completed ]] || fail "the saga ended $status, not completed"
greeting=$("$ctl" show --json "$id" |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["steps"][0]["output"]["greeting"])')
[[ $greeting == "Hello, Ada" ]] || fail "unexpected output: $greeting"
# The shared library the program used is the installed one. (ldd's output
# is read whole: with pipefail, `ldd | grep -q` fails whenever grep's early
# exit makes ldd die of SIGPIPE.)
libs=$(LD_LIBRARY_PATH="$work/prefix/lib" ldd "$work/hello") || fail "ldd $work/hello failed"
[[ $libs == *"$work/prefix/lib/libsaga.so.2"* ]] ||
    fail "hello is not linked to the installed libsaga: $libs"
echo "test_sdk_install: installed, built out of tree with pkg-config, saga $id completed: $greeting"
