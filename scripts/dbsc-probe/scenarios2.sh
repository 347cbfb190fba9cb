#!/usr/bin/env bash
# Second batch: recommended lifetime, and the refresh quota switched off.
cd "$(dirname "$0")"
while [ ! -f runs_done.txt ]; do sleep 2; done
export DBSC_TLS=1 DBSC_COOKIE_ATTRS="Path=/; Secure; HttpOnly; SameSite=Lax"
# S5: bound cookie 180 s ("a few minutes"), page polls every 10 s, 230 s run, thief copies at 20 s
DBSC_BOUND_TTL=180 THIEF_AT=20 ./run_cdp.sh S5_ttl180 230 "--enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting" > runs_S5.txt 2>&1
# S6: bound cookie 45 s with Chrome's refresh quota disabled by feature param
DBSC_BOUND_TTL=45 ./run_cdp.sh S6_ttl45_noquota 80 "--enable-features=DeviceBoundSessions:RefreshQuota/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting" > runs_S6.txt 2>&1
echo ALLDONE > runs_done2.txt
