#!/usr/bin/env bash
# The end-to-end scenarios behind docs/dbsc-chromium-probe.md. Each writes runs/<name>/ and prints a timeline.
cd "$(dirname "$0")"
export DBSC_TLS=1 DBSC_COOKIE_ATTRS="Path=/; Secure; HttpOnly; SameSite=Lax"
F="--enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting"
NOPRO="--disable-features=DeviceBoundSessionProactiveRefresh"
# S1: default Chrome behaviour, bound cookie 45 s, page polls every 10 s
DBSC_BOUND_TTL=45 THIEF_AT=8 ./run_cdp.sh S1_default_ttl45 100 "$F" > runs_S1.txt 2>&1
# S2: proactive refresh off -> refresh only when the bound cookie is missing
DBSC_BOUND_TTL=45 THIEF_AT=8 ./run_cdp.sh S2_noproactive_ttl45 100 "$F" "$NOPRO" > runs_S2.txt 2>&1
# S3: no pre-sent challenge -> 403 + Secure-Session-Challenge round trip
DBSC_NO_CACHED_CHALLENGE=1 DBSC_BOUND_TTL=20 ./run_cdp.sh S3_403_challenge 50 "$F" "$NOPRO" > runs_S3.txt 2>&1
# S4: every refresh proof rejected with 401 -> session terminated, no bound cookie
DBSC_BAD_REFRESH=1 DBSC_BOUND_TTL=20 ./run_cdp.sh S4_bad_proof_401 60 "$F" "$NOPRO" > runs_S4.txt 2>&1
echo ALLDONE > runs_done.txt
