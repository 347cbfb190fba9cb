#!/usr/bin/env bash
# Regenerates BENCHMARKS.md and docs/benchmarks.svg: cloakroom side by side with
# tower-sessions, actix-session and the bare store, in process and over HTTP (wrk).
#
#   scripts/bench.sh           full run (about 15 minutes on 2 cores)
#   scripts/bench.sh --quick   quick run (under 5 minutes on 2 cores, build excluded)
#
# Needs PostgreSQL and Redis on loopback (scripts/services.sh starts or installs them)
# and wrk (installed here from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=()
if [ "${1:-}" = "--quick" ]; then mode=(--quick); fi

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
bash scripts/services.sh

cargo build --release -p cloakroom-benches --bins
mkdir -p target/bench
target/release/bench run "${mode[@]}" --out target/bench/results.json
cp target/bench/results.json docs/benchmarks.json
target/release/bench report --results docs/benchmarks.json --markdown BENCHMARKS.md \
  --chart docs/benchmarks.svg --command "scripts/bench.sh${1:+ $1}"
