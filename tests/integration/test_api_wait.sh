#!/usr/bin/env bash
# Long polls (GET /v1/sagas/{id}?wait=) against a real sagad: a request
# waits until its saga ends and is answered at once when it does (woken
# by the database's NOTIFY, not by polling), or when its time is up;
# 2,000 requests waiting at once cost sagad no thread and no database
# connection each; a bad wait is 400; sagad stopping answers the
# requests it holds and exits cleanly.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init api_wait
# Each step takes 300 ms, so that a saga is still running when asked.
it_env_order=SAGA_EXAMPLE_DELAY_MS=300 it_env_payment=SAGA_EXAMPLE_DELAY_MS=300 \
    it_env_inventory=SAGA_EXAMPLE_DELAY_MS=300 it_services
mkdir -p "$work/sagas"
cp sagas/order.json "$work/sagas/"
# A step on a service nobody runs: its saga stays running (one attempt,
# a long timeout) until an operator skips the step.
cat >"$work/sagas/ghost.json" <<'JSON'
{"name": "ghost", "steps": [{"name": "haunt", "service": "ghost", "action": "haunt",
  "timeout": "10m", "retry": {"max_attempts": 1}}]}
JSON
it_sagad "$work/sagas"
json='Content-Type: application/json'
start() { # definition input -> id
    curl -sS -X POST "$base/v1/sagas" -H "$json" -d "{\"definition\":\"$1\",\"input\":$2}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
get() { # path -> status code in $status, body in $work/b, seconds in $took
    local t0
    t0=$(date +%s.%N)
    status=$(curl -sS -o "$work/b" -w '%{http_code}' "$base$1")
    took=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$work/b" "$1"; }

# ---- a request waits for its saga's end
id=$(start order '{"customer_id":"alice","sku":"widget","quantity":1,"amount":10}')
get "/v1/sagas/$id?wait=60s"
[[ $status == 200 && $(field "['status']") == completed ]] || fail "wait: $status $(cat "$work/b")"
(($(python3 -c "print(int($took < 30))"))) || fail "the wait took $took s"
ok "GET ?wait=60s answered when the saga completed (after $took s; four steps of 300 ms)"

# ---- time up: the saga as it is
ghost=$(start ghost '{}')
get "/v1/sagas/$ghost?wait=1s"
[[ $status == 200 && $(field "['status']") == running ]] || fail "wait 1s: $status $(cat "$work/b")"
(($(python3 -c "print(int(0.9 <= $took < 15))"))) || fail "wait=1s took $took s"
took1=$took
get "/v1/sagas/$ghost?wait=0s"
[[ $status == 200 && $(field "['status']") == running ]] || fail "wait 0s: $status"
for bad in 10x -1s 6m; do
    get "/v1/sagas/$ghost?wait=$bad"
    [[ $status == 400 && $(field "['code']") == invalid_parameter && $(field "['parameter']") == wait ]] ||
        fail "wait=$bad: $status $(cat "$work/b")"
done
get "/v1/sagas/$ghost?colour=red"
[[ $status == 400 && $(field "['code']") == unknown_parameter ]] || fail "colour: $status"
get "/v1/sagas/00000000-0000-4000-8000-000000000000?wait=5s"
[[ $status == 404 ]] || fail "wait on no saga: $status"
ok "GET ?wait=1s on a running saga: 200 running after $took1 s; wait=0s at once; a bad wait (10x, -1s, over 5m) or parameter 400; no saga 404"

# ---- 2,000 at once: no thread, no connection each
threads() { awk '/^Threads:/ {print $2}' "/proc/$sagad_pid/status"; }
conns() { psql "$admin" -Atq -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db'"; }
threads_before=$(threads) conns_before=$(conns)
python3 - "$base" "$ghost" 2000 "$work/waiters.json" >"$work/waiters.log" 2>&1 <<'PY' &
import json, resource, selectors, socket, sys, time
base, saga, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
host, port = base.split("//")[1].split(":")
sel = selectors.DefaultSelector()
req = f"GET /v1/sagas/{saga}?wait=60s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
bufs = {}
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(req)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    bufs[s] = b""
print("sent", n, flush=True)
open(out + ".sent", "w").close()
done, statuses, deadline = 0, {}, time.time() + 120
while done < n and time.time() < deadline:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        chunk = s.recv(65536)
        if chunk:
            bufs[s] += chunk
            continue
        sel.unregister(s)
        s.close()
        done += 1
        head, _, body = bufs[s].partition(b"\r\n\r\n")
        code = head.split(b" ")[1].decode()
        st = json.loads(body).get("status") if code == "200" else code
        statuses[st] = statuses.get(st, 0) + 1
json.dump({"answered": done, "statuses": statuses}, open(out, "w"))
PY
client=$!
for _ in $(seq 1 600); do [[ -e $work/waiters.json.sent ]] && break; sleep 0.1; done
[[ -e $work/waiters.json.sent ]] || fail "the waiters were not sent: $(cat "$work/waiters.log")"
held=0
for _ in $(seq 1 300); do
    held=$(ss -Htn state established "( sport = :${base##*:} )" | wc -l)
    ((held >= 2000)) && break
    sleep 0.1
done
((held >= 2000)) || fail "only $held connections held"
threads_during=$(threads) conns_during=$(conns)
# Held past the server's idle timeout (10 s): a held request is not idle.
sleep 12
[[ -e $work/waiters.json ]] && fail "the waiters were answered before the saga ended: $(cat "$work/waiters.json")"
held=$(ss -Htn state established "( sport = :${base##*:} )" | wc -l)
((held >= 2000)) || fail "only $held of 2000 connections still held after 12 s"
# The API's pool opens up to 4 connections while the 2,000 are read;
# waiting takes none (the one listening thread was there before).
((threads_during <= threads_before + 1)) || fail "threads: $threads_before before, $threads_during with 2000 waiting"
((conns_during <= conns_before + 4)) || fail "database connections: $conns_before before, $conns_during with 2000 waiting"
t0=$(date +%s.%N)
curl -sS -o /dev/null -X POST "$base/v1/sagas/$ghost/skip" -H "$json" -d '{"reason":"the ghost left","step":"haunt"}'
wait "$client" || fail "the waiters: $(cat "$work/waiters.log")"
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d == {"answered": 2000, "statuses": {"completed": 2000}}, d' "$work/waiters.json" ||
    fail "the waiters: $(cat "$work/waiters.json")"
ok "2000 requests held at once (for 12 s) on $threads_during threads ($threads_before before) and $conns_during database connections ($conns_before before); all answered completed $took s after the step was skipped"

# ---- stopping answers what is held
ghost=$(start ghost '{}')
for i in 1 2 3; do
    curl -sS -o "$work/stop$i.json" -w '%{http_code}' "$base/v1/sagas/$ghost?wait=5m" >"$work/stop$i.code" &
    pids+=($!)
done
for _ in $(seq 1 100); do
    (($(ss -Htn state established "( sport = :${base##*:} )" | wc -l) >= 3)) && break
    sleep 0.1
done
kill -TERM "$sagad_pid"
rc=0
wait "$sagad_pid" || rc=$?
sagad_pid=
[[ $rc == 0 ]] || fail "sagad exited $rc on SIGTERM with requests held"
for i in 1 2 3; do
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
done
for i in 1 2 3; do
    [[ $(cat "$work/stop$i.code") == 200 ]] &&
        python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["status"] == "running"' "$work/stop$i.json" ||
        fail "a held request at stop: $(cat "$work/stop$i.code") $(cat "$work/stop$i.json")"
done
ok "SIGTERM with 3 requests held: each answered (200, the saga running), sagad exited 0"
echo "test_api_wait: passed"
