#!/usr/bin/env bash
# The secured local services alone (SAGA_SECURE=1 scripts/services and
# scripts/kafka-acls; nothing built needed): PostgreSQL takes verify-full
# TLS with the password from PGPASSFILE and refuses a plain connection;
# Kafka answers the admin over SASL_SSL (librdkafka checking the
# certificate and its host name) and nobody without SASL; with the ACLs of
# `scripts/kafka-acls test. order payment inventory`, user payment
# produces to test.reply.payment and consumes test.cmd.payment in group
# saga-svc-payment, and is refused test.reply.inventory and
# test.cmd.inventory. Prints PASS/FAIL lines; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
PG_BIN_DIR=${SAGA_PG_BIN:-/usr/lib/postgresql/15/bin}
# Ports of its own, below the ephemeral range, apart from the plain
# services' and test_secure's, so that it can run beside them.
export SAGA_SECURE=1 SAGA_PG_PORT=${SAGA_SECURE_SERVICES_PG_PORT:-25652} \
    SAGA_KAFKA_PORT=${SAGA_SECURE_SERVICES_KAFKA_PORT:-29412}
export SAGA_RUN_DIR=${TMPDIR:-/tmp}/saga-secure-services-$$
unset SAGA_PG_URL SAGA_KAFKA_BROKERS SAGA_SERVICES_OWN_PG SAGA_SERVICES_OWN_KAFKA PGPASSWORD PGPASSFILE \
    SAGA_SECURE_USERS SAGA_KAFKA_ADMIN_CONFIG
name=test_secure_services
failed=0
out=$SAGA_RUN_DIR/test
at() { local ms=$(( $(date +%s%3N) - t0 )); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }
pass() { echo "$name: PASS: $* [$(at)]"; }
fail() { echo "$name: FAIL: $* [$(at)]"; failed=1; }
# A step without which nothing after it means anything.
fatal() { fail "$*"; exit 1; }
cleanup() {
    local rc=$?
    [[ $failed -eq 0 ]] || rc=1
    if [[ $rc -ne 0 ]]; then
        tail -n 15 "$SAGA_RUN_DIR/kafka/kafka.log" "$SAGA_RUN_DIR/pg/postgres.log" 2>/dev/null || true
    fi
    # Whatever env said, these services are this test's own.
    SAGA_SERVICES_OWN_PG=1 SAGA_SERVICES_OWN_KAFKA=1 scripts/services down >/dev/null 2>&1 || true
    rm -rf "$SAGA_RUN_DIR"
    if [[ $rc -eq 0 ]]; then echo "$name: passed in $(( $(date +%s%3N) - t0 )) ms"; else echo "$name: FAILED"; fi
    exit "$rc"
}
t0=$(date +%s%3N)
trap cleanup EXIT
mkdir -p "$out"

# ---- up, env, files
scripts/services up 2>"$out/up.log" || { cat "$out/up.log"; fatal "SAGA_SECURE=1 scripts/services up"; }
pass "secured services up in $(( $(date +%s%3N) - t0 )) ms ($(grep -o 'kafka [0-9.]* ready.*' "$out/up.log"))"
scripts/services env >"$out/env"
eval "$(cat "$out/env")"
[[ $SAGA_PG_URL == *sslmode=verify-full* && -n ${PGPASSFILE:-} && -n ${SAGA_SECRETS_DIR:-} &&
    -n ${SAGA_TLS_DIR:-} && $SAGA_KAFKA_BROKERS == "127.0.0.1:$SAGA_KAFKA_PORT" ]] ||
    fatal "env does not name the URL, PGPASSFILE, brokers, secrets and TLS folders: $(cat "$out/env")"
leak=0
for f in "$SAGA_SECRETS_DIR"/*.password; do
    grep -qF "$(cat "$f")" "$out/env" "$out/up.log" && leak=1
done
if [[ $leak -eq 0 ]]; then pass "env and up print no password"; else fail "a password is in the output of env or up"; fi
modes=$(stat -c '%a %n' "$SAGA_SECRETS_DIR" "$SAGA_SECRETS_DIR"/* "$SAGA_TLS_DIR"/*.key)
bad=$(awk '($1 != 600 && $1 != 700) { print }' <<<"$modes")
if [[ -z $bad ]]; then pass "secrets folder 700, secrets and keys 600"; else fail "modes: $bad"; fi
for u in admin sagad operator order payment inventory; do
    [[ -f $SAGA_SECRETS_DIR/kafka-$u.conf ]] || fail "no client settings for Kafka user $u"
done
san=$(openssl x509 -in "$SAGA_TLS_DIR/server.pem" -noout -ext subjectAltName 2>&1)
if openssl verify -CAfile "$SAGA_TLS_DIR/ca.pem" "$SAGA_TLS_DIR/server.pem" >/dev/null 2>&1 &&
    [[ $san == *DNS:localhost* && $san == *"IP Address:127.0.0.1"* ]]; then
    pass "server certificate signed by the CA, SAN localhost and 127.0.0.1"
else
    fail "server certificate: $san"
fi

# ---- PostgreSQL
ssl=$(psql "$SAGA_PG_URL" -Atc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>"$out/psql.err") || true
if [[ $ssl == t ]]; then
    pass "psql with sslmode=verify-full to 127.0.0.1 (IP SAN), password from PGPASSFILE: TLS"
else
    fail "psql verify-full: '$ssl' $(cat "$out/psql.err")"
fi
if psql "postgresql://saga@127.0.0.1:$SAGA_PG_PORT/saga?sslmode=disable" -Atc "SELECT 1" >/dev/null 2>"$out/plain.err"; then
    fail "a connection without TLS was accepted"
elif grep -q "pg_hba.conf rejects connection" "$out/plain.err"; then
    pass "sslmode=disable refused (pg_hba: reject)"
else
    fail "sslmode=disable failed, but not as refused: $(cat "$out/plain.err")"
fi
if PGPASSFILE=/dev/null psql "$SAGA_PG_URL" -w -Atc "SELECT 1" >/dev/null 2>"$out/nopw.err"; then
    fail "TLS without the password was accepted"
else
    pass "TLS without the password refused"
fi

# ---- Kafka: who may connect
admin=(-F "$SAGA_SECRETS_DIR/kafka-admin.conf" -b "$SAGA_KAFKA_BROKERS")
if kcat "${admin[@]}" -X ssl.endpoint.identification.algorithm=https -L -m 10 >"$out/meta.txt" 2>"$out/meta.err" &&
    grep -q "broker 1 at 127.0.0.1:$SAGA_KAFKA_PORT" "$out/meta.txt"; then
    pass "kcat as admin (SASL_SSL, host name verified) lists the metadata"
else
    fail "kcat as admin: $(cat "$out/meta.err")"
fi
# Three clients that must get nothing; each waits out its 3 s, so at once.
kcat -b "$SAGA_KAFKA_BROKERS" -L -m 3 >/dev/null 2>&1 &
plain=$!
kcat -b "$SAGA_KAFKA_BROKERS" -X security.protocol=SSL -X ssl.ca.location="$SAGA_TLS_DIR/ca.pem" \
    -L -m 3 >/dev/null 2>&1 &
tls_only=$!
sed 's/^sasl.password=.*/sasl.password=wrong/' "$SAGA_SECRETS_DIR/kafka-payment.conf" >"$out/wrong.conf"
kcat -F "$out/wrong.conf" -b "$SAGA_KAFKA_BROKERS" -L -m 3 >/dev/null 2>"$out/wrong.err" &
wrong=$!
if wait "$plain"; then
    fail "the broker answered a client without TLS and SASL"
else
    pass "kcat without TLS and SASL gets nothing"
fi
if wait "$tls_only"; then
    fail "the broker answered a client with TLS but without SASL"
else
    pass "kcat with TLS but without SASL gets nothing"
fi
if wait "$wrong"; then
    fail "a wrong password was accepted"
elif grep -q "SASL authentication error" "$out/wrong.err"; then
    pass "a wrong SCRAM password refused"
else
    fail "a wrong password failed, but not in SASL: $(tail -n 2 "$out/wrong.err")"
fi

# ---- ACLs
t1=$(date +%s%3N)
scripts/kafka-acls test. order payment inventory 2>"$out/acls.log" ||
    { cat "$out/acls.log"; fatal "scripts/kafka-acls test. order payment inventory"; }
pass "scripts/kafka-acls: $(grep -c '^kafka-acls.sh ' "$out/acls.log") commands in $(( $(date +%s%3N) - t1 )) ms"
# sagad creates the topics of each service (the services may not): a
# metadata request for a missing topic creates it when the asker may.
sagad=(-F "$SAGA_SECRETS_DIR/kafka-sagad.conf" -b "$SAGA_KAFKA_BROKERS")
topics=(test.cmd.payment test.reply.payment test.dead.payment test.cmd.inventory test.reply.inventory)
for t in "${topics[@]}"; do
    kcat "${sagad[@]}" -L -t "$t" -m 5 >/dev/null 2>&1 || true
done
all_there() {
    local md t
    md=$(kcat "${admin[@]}" -L -m 5 2>/dev/null) || return 1
    for t in "${topics[@]}"; do
        [[ $md == *"topic \"$t\" with 4 partitions"* ]] || return 1
    done
}
for _ in $(seq 1 100); do
    all_there && break
    sleep 0.1
done
if all_there; then pass "sagad created ${topics[*]}"; else fatal "sagad could not create ${topics[*]}"; fi
if echo "from-sagad" | kcat "${sagad[@]}" -X enable.idempotence=true -P -t test.cmd.payment 2>"$out/s1.err"; then
    pass "sagad produces to test.cmd.payment (idempotent producer)"
else
    fail "sagad producing to test.cmd.payment: $(cat "$out/s1.err")"
fi
# As libsaga's participant does: an idempotent producer.
pay=(-F "$SAGA_SECRETS_DIR/kafka-payment.conf" -b "$SAGA_KAFKA_BROKERS")
if echo "payment-reply" | kcat "${pay[@]}" -X enable.idempotence=true -P -t test.reply.payment 2>"$out/p1.err"; then
    pass "payment produces to test.reply.payment (idempotent producer)"
else
    fail "payment producing to test.reply.payment: $(cat "$out/p1.err")"
fi
# A group consumer, as libsaga's: offsets committed in group saga-svc-payment.
got=$(timeout 30 kcat "${pay[@]}" -G saga-svc-payment -X auto.offset.reset=earliest -X enable.auto.commit=true \
    -X auto.commit.interval.ms=100 -c 1 -e -q test.cmd.payment 2>"$out/c1.err") || true
if [[ $got == *from-sagad* ]] && ! grep -qi "authoriz" "$out/c1.err"; then
    pass "payment consumes test.cmd.payment in group saga-svc-payment"
else
    fail "payment consuming test.cmd.payment: got '$got': $(cat "$out/c1.err")"
fi
if echo "forged" | kcat "${pay[@]}" -P -t test.reply.inventory >"$out/p2.err" 2>&1; then
    fail "payment produced to test.reply.inventory"
elif grep -qi "authoriz" "$out/p2.err"; then
    pass "payment producing to test.reply.inventory refused: authorization"
else
    fail "payment producing to test.reply.inventory failed, but not for authorization: $(cat "$out/p2.err")"
fi
got=$(timeout 30 kcat "${pay[@]}" -G saga-svc-payment -X auto.offset.reset=earliest -c 1 -e -q test.cmd.inventory 2>"$out/c2.err") || true
if [[ -n $got ]]; then
    fail "payment read test.cmd.inventory: $got"
elif grep -qi "authoriz" "$out/c2.err"; then
    pass "payment consuming test.cmd.inventory refused: authorization"
else
    fail "payment consuming test.cmd.inventory failed, but not for authorization: $(cat "$out/c2.err")"
fi
got=$(timeout 30 kcat "${pay[@]}" -G saga-svc-inventory -X auto.offset.reset=earliest -c 1 -e -q test.cmd.payment 2>"$out/c3.err") || true
if [[ -z $got ]] && grep -qi "authoriz" "$out/c3.err"; then
    pass "payment in inventory's group saga-svc-inventory refused: authorization"
else
    fail "payment in group saga-svc-inventory: got '$got': $(cat "$out/c3.err")"
fi

# sagad's consumer: all reply topics by pattern, as group sagad.
got=$(timeout 30 kcat "${sagad[@]}" -G sagad -X auto.offset.reset=earliest -c 1 -e -q '^test\.reply(\..+)?$' 2>"$out/c4.err") || true
if [[ $got == *payment-reply* ]]; then
    pass "sagad consumes ^test\.reply(\..+)?\$ in group sagad (payment's reply)"
else
    fail "sagad consuming the reply topics: got '$got': $(cat "$out/c4.err")"
fi
# The operator (sagactl dead replay) writes a reply again; reads nothing.
op=(-F "$SAGA_SECRETS_DIR/kafka-operator.conf" -b "$SAGA_KAFKA_BROKERS")
if echo "replayed" | kcat "${op[@]}" -X enable.idempotence=true -P -t test.reply.payment 2>"$out/o1.err"; then
    pass "operator produces to test.reply.payment"
else
    fail "operator producing to test.reply.payment: $(cat "$out/o1.err")"
fi
got=$(timeout 30 kcat "${op[@]}" -G saga-svc-payment -X auto.offset.reset=earliest -c 1 -e -q test.cmd.payment 2>"$out/o2.err") || true
if [[ -z $got ]] && grep -qi "authoriz" "$out/o2.err"; then
    pass "operator consuming test.cmd.payment refused: authorization"
else
    fail "operator consuming test.cmd.payment: got '$got': $(cat "$out/o2.err")"
fi

# ---- down, with the environment env gave (as after the README's eval):
# both are recognised as ours and stopped.
scripts/services down 2>"$out/down.log" || fail "scripts/services down: $(cat "$out/down.log")"
if grep -q "postgresql stopped" "$out/down.log" && grep -q "kafka stopped" "$out/down.log" &&
    ! "$PG_BIN_DIR/pg_isready" -q -h 127.0.0.1 -p "$SAGA_PG_PORT"; then
    pass "down after eval env stops PostgreSQL and Kafka"
else
    fail "down after eval env: $(cat "$out/down.log")"
fi
