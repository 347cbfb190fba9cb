#!/usr/bin/env bash
# Soak: full load on SQLite and on a private Redis for SECONDS each (default 600), recording
# resident memory, p99 latency per window and errors in reliability/results/soak-*.json,
# then regenerating RELIABILITY.md. Not part of CI. RELIABILITY_PROFILE=dev: debug build.
#
#   scripts/soak.sh [SECONDS] [STORE...]      stores: sqlite redis (default both)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
stores=("$@")
[[ ${#stores[@]} -gt 0 ]] || stores=(sqlite redis)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
profile=${RELIABILITY_PROFILE:-release}
cargo build --profile "$profile" -p cloakroom-reliability --bin reliability
bin=$CARGO_TARGET_DIR/$([[ $profile == dev ]] && echo debug || echo "$profile")/reliability
status=0
for store in "${stores[@]}"; do
    "$bin" soak "$store" --seconds "$seconds" \
        --out "reliability/results/soak-$store.json" || status=1
done
scripts/reliability.sh report
exit $status
