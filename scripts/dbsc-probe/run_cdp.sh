#!/usr/bin/env bash
# Usage: run_cdp.sh NAME SECONDS [chromium flags...]   (server knobs via DBSC_* env)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
name="$1"; secs="$2"; shift 2
out="$here/runs/$name"; rm -rf "$out"; mkdir -p "$out"
port="${DBSC_PORT:-8455}"
export DBSC_PORT="$port" DBSC_LOG="$out/requests.jsonl"
python3 "$here/dbsc_server.py" 2>"$out/server.stderr" &
srv=$!
sleep 1
scheme=http; [ "${DBSC_TLS:-0}" = 1 ] && scheme=https
# trust the probe's self-signed localhost cert as VALID (not merely ignored): DBSC needs a valid TLS connection
spki_flag=()
if [ "${DBSC_TLS:-0}" = 1 ] && [ "${DBSC_NO_SPKI:-0}" != 1 ]; then
  spki=$(python3 -c "
import base64, hashlib
from cryptography import x509
from cryptography.hazmat.primitives import serialization
c = x509.load_pem_x509_certificate(open('$here/localhost.pem', 'rb').read())
print(base64.b64encode(hashlib.sha256(c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()).decode())")
  spki_flag=("--ignore-certificate-errors-spki-list=$spki")
fi
if [ -n "${THIEF_AT:-}" ]; then python3 "$here/thief.py" "$scheme://localhost:$port" "$THIEF_AT" > "$out/thief.txt" 2>&1 & fi
${WRAP:-} python3 "$here/cdp_probe.py" "$out" "$secs" "$scheme://localhost:$port/login" -- "${spki_flag[@]}" "$@"
curl -sk "$scheme://localhost:$port/state" > "$out/state.json"
kill "$srv"; wait "$srv" 2>/dev/null
wait
python3 "$here/summarize.py" "$out"
[ -f "$out/thief.txt" ] && cat "$out/thief.txt"
