#!/usr/bin/env bash
# The API over TLS, and the probes on a listener of their own, against a
# real sagad: --tls-cert/--tls-key (a self-signed certificate made here)
# serve /v1 over HTTPS only (a held long poll included), a client that
# does not trust the certificate is refused, plain HTTP gets no answer;
# --metrics serves /metrics, /healthz and /readyz apart, plain and
# without a token, and the API's listener no longer does; a key others
# may read, a key that does not match, or half of the pair stop sagad
# at start saying why.
set -euo pipefail
source "$(dirname "$0")/it_lib.sh"
it_init api_tls
mkdir -p "$work/sagas"
cat >"$work/sagas/ghost.json" <<'JSON'
{"name": "ghost", "steps": [{"name": "haunt", "service": "ghost", "action": "haunt",
  "timeout": "10m", "retry": {"max_attempts": 1}}]}
JSON
# A self-signed certificate for 127.0.0.1, and another key.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sagad test" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
openssl genrsa -out "$work/other.pem" 2048 2>/dev/null
chmod 600 "$work/key.pem" "$work/other.pem"

# ---- refused at start, saying why
expect_refusal() { # exit-code message args...
    local want=$1 msg=$2 rc=0
    shift 2
    timeout 60 "$bin/sagad" --definitions "$work/sagas" "$@" >"$work/refused.log" 2>&1 || rc=$?
    [[ $rc == "$want" ]] && grep -q -- "$msg" "$work/refused.log" ||
        fail "sagad $* exited $rc (expected $want, \"$msg\"): $(tail -n 3 "$work/refused.log")"
}
expect_refusal 2 "go together (--tls-key is missing)" --http 127.0.0.1:0 --tls-cert "$work/cert.pem"
expect_refusal 2 "give --http too" --metrics 127.0.0.1:0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
chmod 644 "$work/key.pem"
expect_refusal 1 "others" --http 127.0.0.1:0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
chmod 600 "$work/key.pem"
expect_refusal 2 "not PEM" --http 127.0.0.1:0 --tls-cert "$work/sagas/ghost.json" --tls-key "$work/key.pem"
expect_refusal 1 "not a matching PEM pair" --http 127.0.0.1:0 --tls-cert "$work/cert.pem" --tls-key "$work/other.pem"
expect_refusal 2 '--metrics "nowhere"' --metrics nowhere
ok "refused at start: half the TLS pair, TLS without --http, a key others may read, a certificate not PEM, a key not the certificate's, a bad --metrics"

# ---- served
"$bin/sagad" --definitions "$work/sagas" --http 127.0.0.1:0 --metrics 127.0.0.1:0 \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >"$work/sagad.log" 2>&1 &
sagad_pid=$!
for _ in $(seq 1 600); do grep -q "sagad running" "$work/sagad.log" && break; sleep 0.1; done
mport=$(grep -m 1 -o '/readyz on 127.0.0.1:[0-9]*' "$work/sagad.log" | sed 's/.*://') || true
aport=$(grep -m 1 -o 'serving the API .* on 127.0.0.1:[0-9]* over TLS' "$work/sagad.log" | sed 's/.*://; s/ over TLS//') || true
[[ -n $mport && -n $aport ]] || fail "sagad does not say where it serves: $(grep serving "$work/sagad.log")"
api="https://127.0.0.1:$aport"
code() { curl -sS -o "$work/b" -w '%{http_code}' "$@"; }
[[ $(code --cacert "$work/cert.pem" "$api/v1/definitions") == 200 ]] || fail "GET over TLS: $(cat "$work/b")"
id=$(curl -sS --cacert "$work/cert.pem" -X POST "$api/v1/sagas" -H 'Content-Type: application/json' \
    -d '{"definition":"ghost","input":{}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
[[ $(code --cacert "$work/cert.pem" "$api/v1/sagas/$id?wait=1s") == 200 ]] &&
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["status"] in ("pending", "running")' "$work/b" ||
    fail "a long poll over TLS: $(cat "$work/b")"
rc=0; curl -sS -o /dev/null "$api/v1/definitions" 2>"$work/untrusted.err" || rc=$?
[[ $rc == 60 ]] || fail "a client that does not trust the certificate: exit $rc $(cat "$work/untrusted.err")"
rc=0; curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$aport/v1/definitions" 2>/dev/null || rc=$?
[[ $rc != 0 ]] || fail "plain HTTP on the TLS listener was answered"
[[ $(code --cacert "$work/cert.pem" "$api/metrics") == 404 ]] || fail "/metrics on the API's listener: not 404"
[[ $(code --cacert "$work/cert.pem" "$api/readyz") == 404 ]] || fail "/readyz on the API's listener: not 404"
ok "the API over TLS: read, started, long-polled (held and answered); untrusted client refused (curl 60); plain HTTP unanswered; no probes there"
[[ $(code "http://127.0.0.1:$mport/metrics") == 200 ]] && grep -q '^saga_' "$work/b" || fail "/metrics apart: $(head -c 300 "$work/b")"
for _ in $(seq 1 100); do [[ $(code "http://127.0.0.1:$mport/readyz") == 200 ]] && break; sleep 0.1; done
[[ $(code "http://127.0.0.1:$mport/readyz") == 200 ]] || fail "/readyz apart: $(cat "$work/b")"
[[ $(code "http://127.0.0.1:$mport/healthz") == 200 ]] || fail "/healthz apart: $(cat "$work/b")"
[[ $(code "http://127.0.0.1:$mport/v1/definitions") == 404 ]] || fail "the API on the metrics listener: not 404"
ok "--metrics: /metrics, /healthz, /readyz served apart, plain and without a token; the API is not served there"
kill -TERM "$sagad_pid"
rc=0; wait "$sagad_pid" || rc=$?
sagad_pid=
[[ $rc == 0 ]] || fail "sagad exited $rc"
echo "test_api_tls: passed"
