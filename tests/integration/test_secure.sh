#!/usr/bin/env bash
# The trust boundary on a secured broker and database (docs/SECURITY.md,
# "What is tested"): its own Kafka with SASL_SSL (SCRAM-SHA-512,
# certificates made for the run) and the StandardAuthorizer with the ACLs
# of scripts/kafka-acls, and its own PostgreSQL with ssl on, reached with
# sslmode=verify-full. sagad and the three example services run with
# per-service credentials and signing keys, secrets in files only. Shows:
# the order saga completes over TLS+SASL; the payment service's
# credentials cannot write saga.reply.inventory nor read saga.cmd.inventory;
# forged replies (unsigned, or signed with inventory's key) change nothing
# and are counted; a forged command is refused by the participant; no
# password shows in any log, command line or environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${SAGA_BUILD_DIR:-build}
bin=$PWD/$build/bin
work=$PWD/$build/tests/secure-$$
# Ports of its own (below the ephemeral range), beside the plain services.
export SAGA_PG_PORT=${SAGA_SECURE_PG_PORT:-25632} SAGA_KAFKA_PORT=${SAGA_SECURE_KAFKA_PORT:-29392}
export SAGA_RUN_DIR=$work/services SAGA_SECURE=1
unset SAGA_PG_URL SAGA_KAFKA_BROKERS SAGA_SERVICES_OWN_PG SAGA_SERVICES_OWN_KAFKA \
    SAGA_KAFKA_OPTIONS SAGA_KAFKA_OPTIONS_FILE SAGA_KEY_FILE PGPASSWORD
pids=()
fail() { echo "test_secure: FAIL: $*" >&2; exit 1; }
ok() { echo "test_secure: ok: $*"; }
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $rc -ne 0 ]]; then
        tail -n 15 "$work"/logs/*.log >&2 2>/dev/null || true
        tail -n 20 "$SAGA_RUN_DIR/kafka/kafka.log" >&2 2>/dev/null || true
    fi
    scripts/services down >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] && rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/logs" "$work/keys"
chmod 700 "$work/keys"

wait_for() { # what, command...: until it succeeds, 60 s at most
    local what=$1
    shift
    for _ in $(seq 1 600); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "timed out waiting for $what"
}

t0=$(date +%s%3N)
scripts/services up 2>"$work/logs/services.log" || { cat "$work/logs/services.log" >&2; fail "secured services did not start"; }
eval "$(scripts/services env)"
secrets=$SAGA_SECRETS_DIR
export SAGA_TOPIC_PREFIX="sec$$."
ok "secured Kafka and PostgreSQL up in $(( $(date +%s%3N) - t0 )) ms"

# ---- the database: TLS verified, no plain connection, no password in argv
psql "$SAGA_PG_URL" -Atc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" | grep -qx t ||
    fail "the verify-full connection is not TLS"
if psql "postgresql://saga@127.0.0.1:$SAGA_PG_PORT/saga?sslmode=disable" -Atc "SELECT 1" >/dev/null 2>&1; then
    fail "a connection without TLS was accepted"
fi
# A URL file readable by others is refused, with why.
printf '# the orchestrator database\n%s\n' "$SAGA_PG_URL" >"$work/db.url"
chmod 644 "$work/db.url"
if "$bin/sagactl" --db-file "$work/db.url" migrate --dir migrations >"$work/logs/refused.log" 2>&1; then
    fail "sagactl accepted a URL file readable by others"
fi
grep -q "readable or writable by others" "$work/logs/refused.log" || fail "no reason given for the refused URL file"
chmod 600 "$work/db.url"
unset SAGA_PG_URL
export SAGA_PG_URL_FILE=$work/db.url
"$bin/sagactl" migrate --dir migrations >"$work/logs/migrate.log" 2>&1 || fail "sagactl migrate over TLS"
ok "PostgreSQL: verify-full TLS, plain refused, URL from a file (mode checked), password from PGPASSFILE"

# ---- the broker: no anonymous client, ACLs
if kcat -b "$SAGA_KAFKA_BROKERS" -L -m 3 >/dev/null 2>&1; then
    fail "the broker answered a client without TLS and SASL"
fi
scripts/kafka-acls "$SAGA_TOPIC_PREFIX" order payment inventory 2>"$work/logs/acls.log" ||
    { cat "$work/logs/acls.log" >&2; fail "granting the ACLs"; }

# ---- keys: sagad's folder, and each service's own file
for svc in order payment inventory; do
    (umask 077 && openssl rand -hex 32 >"$work/keys/$svc.key")
done
for svc in order payment inventory; do
    (umask 077 && cp "$work/keys/$svc.key" "$work/$svc-service.key")
done

# ---- sagad first: it creates every topic (the services may create none)
"$bin/sagad" --definitions sagas --db-file "$work/db.url" \
    --kafka-options-file "$secrets/kafka-sagad.conf" --key-dir "$work/keys" \
    --http 127.0.0.1:0 --observe-interval 1s >"$work/logs/sagad.log" 2>&1 &
pids+=($!)
sagad_pid=$!
wait_for "sagad running" grep -q "sagad running" "$work/logs/sagad.log"
for svc in order payment inventory; do
    grep -q "service $svc: commands signed, replies verified" "$work/logs/sagad.log" ||
        fail "sagad does not sign for $svc"
done
http=$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$work/logs/sagad.log" | sed 's/.*on //')
declare -A spid
for svc in order payment inventory; do
    SAGA_PG_URL=$(head -n 2 "$work/db.url" | tail -n 1) \
        SAGA_KAFKA_OPTIONS_FILE="$secrets/kafka-$svc.conf" SAGA_KEY_FILE="$work/$svc-service.key" \
        "$bin/$svc-service" >"$work/logs/$svc.log" 2>&1 &
    pids+=($!)
    spid[$svc]=$!
done
for svc in order payment inventory; do
    wait_for "$svc ready" grep -q "ready" "$work/logs/$svc.log"
done
psql "$(sed -n 2p "$work/db.url")" -q -v ON_ERROR_STOP=1 -f examples/seed.sql >/dev/null

sql() { psql "$(sed -n 2p "$work/db.url")" -Atc "$1"; }
start() { "$bin/sagactl" start order --input "$1"; }
final() { # id: wait until the saga ends, print its status
    "$bin/sagactl" wait "$1" --timeout 60s >/dev/null 2>&1 || true
    sql "SELECT status FROM saga.saga WHERE id = '$1'"
}
metric() { # series: its value on sagad's /metrics (0 when absent)
    curl -fsS "http://$http/metrics" | awk -v s="$1" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }'
}

# ---- the order saga over TLS + SASL, signed both ways
id=$(start '{"customer_id":"alice","sku":"widget","quantity":1,"amount":100}')
[[ $(final "$id") == completed ]] || fail "the order saga did not complete over TLS+SASL"
ok "order saga $id completed over SASL_SSL with signed commands and replies"

# ---- the payment service's credentials, confined by the ACLs
pay=(-F "$secrets/kafka-payment.conf" -b "$SAGA_KAFKA_BROKERS")
if echo '{}' | kcat "${pay[@]}" -P -t "${SAGA_TOPIC_PREFIX}reply.inventory" -k x >"$work/logs/kcat1.log" 2>&1; then
    fail "payment's credentials wrote to ${SAGA_TOPIC_PREFIX}reply.inventory"
fi
grep -qi "authoriz" "$work/logs/kcat1.log" || fail "writing reply.inventory failed, but not for authorization: $(cat "$work/logs/kcat1.log")"
if kcat "${pay[@]}" -C -t "${SAGA_TOPIC_PREFIX}cmd.inventory" -o beginning -e -c 1 -q >"$work/logs/kcat2.log" 2>&1 &&
    [[ -s $work/logs/kcat2.log ]] && ! grep -qi "authoriz" "$work/logs/kcat2.log"; then
    fail "payment's credentials read ${SAGA_TOPIC_PREFIX}cmd.inventory"
fi
grep -qi "authoriz" "$work/logs/kcat2.log" || fail "reading cmd.inventory failed, but not for authorization: $(cat "$work/logs/kcat2.log")"
ok "payment's credentials: writing ${SAGA_TOPIC_PREFIX}reply.inventory and reading ${SAGA_TOPIC_PREFIX}cmd.inventory refused by the broker"

# ---- forged replies: bob (500 credit) orders 700; before payment answers,
# payment's own credentials (which the ACLs let write reply.payment) send
# an unsigned `ok` and one signed with inventory's key.
sign() { # key-file topic key value
    python3 - "$@" <<'PY'
import hashlib, hmac, sys
key = bytes.fromhex(open(sys.argv[1]).read().split()[0])
f = lambda b: len(b).to_bytes(4, "big") + b
m = f(b"saga.v1") + f(sys.argv[2].encode()) + f(sys.argv[3].encode()) + f(sys.argv[4].encode())
print("v1=" + hmac.new(key, m, hashlib.sha256).hexdigest())
PY
}
bob0=$(sql "SELECT reserved FROM payment.customers WHERE id = 'bob'")
kill -STOP "${spid[payment]}"
id=$(start '{"customer_id":"bob","sku":"widget","quantity":1,"amount":700}')
wait_for "step 1 dispatched" test "$(sql "SELECT count(*) FROM saga.saga_event WHERE saga_id = '$id' AND kind = 'step_dispatched' AND step = 1")" = 1
forged="{\"v\":1,\"saga_id\":\"$id\",\"step\":1,\"phase\":\"invoke\",\"command_id\":\"$id/1/invoke\",\"attempt\":1,\"status\":\"ok\",\"output\":{\"reservation\":\"forged\"}}"
topic=${SAGA_TOPIC_PREFIX}reply.payment
before=$(metric 'saga_replies_dropped_total{reason="unauthenticated"}')
printf '%s' "$forged" | kcat "${pay[@]}" -P -t "$topic" -k "$id" 2>"$work/logs/kcat3.log" || fail "producing the unsigned forgery"
printf '%s' "$forged" | kcat "${pay[@]}" -P -t "$topic" -k "$id" \
    -H "saga-signature=$(sign "$work/keys/inventory.key" "$topic" "$id" "$forged")" 2>>"$work/logs/kcat3.log" ||
    fail "producing the forgery signed with inventory's key"
wait_for "2 forged replies set aside" test "$(sql "SELECT count(*) FROM saga.dead_letter WHERE ref = '$id' AND source = 'reply'")" = 2
[[ $(sql "SELECT status FROM saga.saga WHERE id = '$id'") == running ]] || fail "a forged reply moved the saga"
after=$(metric 'saga_replies_dropped_total{reason="unauthenticated"}')
[[ $(( ${after%.*} - ${before%.*} )) -eq 2 ]] || fail "forged replies counted $before -> $after, not +2"
kill -CONT "${spid[payment]}"
[[ $(final "$id") == compensated ]] || fail "bob's order was not compensated on payment's real answer"
[[ $(sql "SELECT reserved FROM payment.customers WHERE id = 'bob'") == "$bob0" ]] || fail "bob's credit changed"
ok "forged replies (unsigned; signed with inventory's key) set aside and counted; the real answer compensated the saga"

# ---- a forged command: with the broker's admin credentials (payment's may
# not write command topics), release alice's credit for her completed order.
alice0=$(sql "SELECT reserved FROM payment.customers WHERE id = 'alice'")
done_id=$(sql "SELECT id FROM saga.saga WHERE status = 'completed' LIMIT 1")
cmd="{\"v\":1,\"saga_id\":\"$done_id\",\"saga\":\"order\",\"saga_version\":1,\"step\":1,\"step_name\":\"reserve_credit\",\"phase\":\"compensate\",\"action\":\"release_credit\",\"command_id\":\"$done_id/1/compensate\",\"attempt\":1,\"reply_to\":\"${SAGA_TOPIC_PREFIX}reply.payment\",\"payload\":{\"customer_id\":\"alice\",\"amount\":100}}"
printf '%s' "$cmd" | kcat -F "$secrets/kafka-admin.conf" -b "$SAGA_KAFKA_BROKERS" -P \
    -t "${SAGA_TOPIC_PREFIX}cmd.payment" -k "$done_id" 2>"$work/logs/kcat4.log" || fail "producing the forged command"
wait_for "the payment service to refuse the forged command" grep -q "dead-lettered.*unauthenticated" "$work/logs/payment.log"
[[ $(sql "SELECT reserved FROM payment.customers WHERE id = 'alice'") == "$alice0" ]] || fail "the forged command released credit"
[[ $(sql "SELECT count(*) FROM payment.saga_barrier WHERE saga_id = '$done_id' AND phase = 'compensate'") == 0 ]] ||
    fail "the forged command reached the barrier"
ok "a forged command (unsigned release_credit) dead-lettered by the payment service; credit unchanged"

# ---- secrets: in no log, command line or environment
for p in "$sagad_pid" "${spid[@]}"; do
    for f in "$secrets"/*.password; do
        if tr '\0' '\n' <"/proc/$p/cmdline" | grep -qF "$(cat "$f")" ||
            tr '\0' '\n' <"/proc/$p/environ" | grep -qF "$(cat "$f")"; then
            fail "the password of $(basename "$f") is on the command line or in the environment of pid $p"
        fi
    done
done
kill -TERM "${pids[@]}" 2>/dev/null || true
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
leaks=0
for f in "$secrets"/*.password; do
    pw=$(cat "$f")
    if grep -rqF "$pw" "$work/logs" "$SAGA_RUN_DIR/kafka/kafka.log" "$SAGA_RUN_DIR/pg/postgres.log" 2>/dev/null; then
        echo "test_secure: the password of $(basename "$f") is in a log" >&2
        leaks=1
    fi
done
for f in "$work"/keys/*.key; do
    if grep -rqF "$(cat "$f")" "$work/logs"; then
        echo "test_secure: key $(basename "$f") is in a log" >&2
        leaks=1
    fi
done
[[ $leaks -eq 0 ]] || fail "secrets leaked into logs"
ok "no password or key in the logs of sagad, the services, sagactl, the broker or the database, nor in a command line or environment"
echo "test_secure: passed in $(( $(date +%s%3N) - t0 )) ms"
