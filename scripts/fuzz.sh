#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a time budget each, records
# executions and crashes per target in reliability/results/fuzz.tsv (for
# scripts/reliability.sh), and fails if any target crashed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Without them it
# SKIPS LOUDLY and exits 0, unless CLOAKROOM_REQUIRE_FUZZ=1 (then it fails).
# Env: FUZZ_SANITIZER (default none: the code under test is safe Rust; `address` for the
# C inside SQLite), FUZZ_JOBS (parallel processes per target, default 1),
# FUZZ_RUNS (stop a target after this many executions even if time is left: the campaign's
# goal is 10 million executions or one hour, whichever comes first), CARGO_TARGET_DIR
# (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
budget=${1:-60}
shift || true

skip() {
    if [[ "${CLOAKROOM_REQUIRE_FUZZ:-0}" == 1 ]]; then
        echo "fuzz.sh: $1 (CLOAKROOM_REQUIRE_FUZZ=1)" >&2
        exit 1
    fi
    echo "********************************************************************" >&2
    echo "SKIPPING the fuzz targets: $1" >&2
    echo "********************************************************************" >&2
    exit 0
}
cargo +nightly --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz is not installed (cargo install cargo-fuzz)"

sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
target_dir=${CARGO_TARGET_DIR:-$root/fuzz/target}
cd fuzz
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"

results=$root/reliability/results
mkdir -p "$results" logs
out=$results/fuzz.tsv
tmp=$(mktemp)
printf 'target\tseconds\texecutions\texecs_per_s\tcrashes\tcorpus\tdate\tcommand\n' >"$tmp"
failed=()
extra=()
if [[ $jobs -gt 1 ]]; then
    extra=(-jobs="$jobs" -workers="$jobs")
fi
if [[ -n "${FUZZ_RUNS:-}" ]]; then
    extra+=(-runs="$FUZZ_RUNS")
fi
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target" "seeds/$target"
    log=logs/$target.log
    before=$(find "artifacts/$target" -type f | wc -l)
    start=$(date +%s)
    status=0
    cargo +nightly fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" \
        "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$budget" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        "${extra[@]}" -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
    seconds=$(($(date +%s) - start))
    # With -jobs, each worker logs to fuzz-N.log; sum what every process executed.
    execs=$({ cat "$log"; cat fuzz-*.log 2>/dev/null || true; } | awk -F: '/stat::number_of_executed_units/ {n += $NF} END {print n + 0}')
    rm -f fuzz-*.log
    crashes=$(($(find "artifacts/$target" -type f | wc -l) - before))
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        # A crash libFuzzer could not write out (or a build/run failure) still counts.
        crashes=1
    fi
    corpus=$(find "corpus/$target" -type f | wc -l)
    rate=$((execs / (seconds > 0 ? seconds : 1)))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$seconds" "$execs" "$rate" "$crashes" \
        "$corpus" "$(date -u +%FT%TZ)" "scripts/fuzz.sh $budget $target" >>"$tmp"
    echo "fuzz.sh: $target: $execs executions in ${seconds}s, $crashes crash(es), corpus $corpus"
    if [[ $crashes -ne 0 ]]; then
        failed+=("$target")
        echo "fuzz.sh: $target CRASHED: see fuzz/$log and fuzz/artifacts/$target/;" \
            "minimise with: cd fuzz && cargo +nightly fuzz tmin $target <artifact>" >&2
        tail -n 40 "$log" >&2
    fi
done

# Keep the figures of targets not run this time.
if [[ -f "$out" ]]; then
    awk -F'\t' 'NR == FNR { if (FNR > 1) ran[$1] = 1; next } FNR > 1 && !($1 in ran)' "$tmp" "$out" >"$tmp.kept"
    cat "$tmp.kept" >>"$tmp"
    rm -f "$tmp.kept"
fi
mv "$tmp" "$out"
echo "fuzz.sh: figures in ${out#"$root"/}"
if [[ ${#failed[@]} -ne 0 ]]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
