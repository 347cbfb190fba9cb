#!/usr/bin/env bash
# The reliability campaign (issue 12): runs the harnesses and regenerates RELIABILITY.md
# from their recorded results (reliability/results/).
#
#   scripts/reliability.sh [quick|full|report]
#
#   quick  (default) fuzz 60 s per target, 100 SIGKILLs per disk store, one outage per
#          server, 60 s soaks, 10,000-session scale runs. About 25 minutes on 2 cores.
#   full   the issue's figures: fuzz 1 h per target, 1,000 SIGKILLs per store, 600 s
#          soaks, 100,000-session scale runs. About 10 hours.
#   report only regenerate RELIABILITY.md from the recorded results.
#
# Env: RELIABILITY_SKIP="fuzz crash outage soak scale" skips steps (their recorded results
# stay); RELIABILITY_SCALE_URLS overrides the store URLs of the scale step (default: a
# SQLite file and a directory; add the shared servers' URLs to measure them too);
# FUZZ_SECONDS, CRASH_KILLS, SOAK_SECONDS, SCALE_SESSIONS override the mode's figures;
# RELIABILITY_PROFILE=dev uses a debug build of the harness (default release).
# A step whose target is missed is recorded and the script goes on; it exits 1 at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-quick}
results=$root/reliability/results
mkdir -p "$results"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

case $mode in
quick) fuzz_s=60 kills=100 soak_s=60 sessions=10000 ;;
full) fuzz_s=3600 kills=1000 soak_s=600 sessions=100000 ;;
report) ;;
*)
    echo "usage: scripts/reliability.sh [quick|full|report]" >&2
    exit 2
    ;;
esac

failed=()
skipped() { [[ " ${RELIABILITY_SKIP:-} " == *" $1 "* ]]; }
step() {
    local name=$1
    shift
    echo "== reliability: $name: $*"
    if ! "$@"; then
        failed+=("$name")
    fi
}

if [[ $mode != report ]]; then
    fuzz_s=${FUZZ_SECONDS:-$fuzz_s}
    kills=${CRASH_KILLS:-$kills}
    soak_s=${SOAK_SECONDS:-$soak_s}
    sessions=${SCALE_SESSIONS:-$sessions}
    echo "$mode" >"$results/mode"
    profile=${RELIABILITY_PROFILE:-release}
    echo "$profile" >"$results/profile"
    cargo build --profile "$profile" -p cloakroom-reliability --bin reliability || exit 1
    bin=$CARGO_TARGET_DIR/$([[ $profile == dev ]] && echo debug || echo "$profile")/reliability

    skipped fuzz || step fuzz scripts/fuzz.sh "$fuzz_s"
    if ! skipped crash; then
        for store in sqlite file; do
            step "crash-$store" "$bin" crash "$store" --kills "$kills" --scan-every 25 \
                --out "$results/crash-$store.json"
        done
    fi
    if ! skipped outage; then
        for server in redis postgres mysql memcached; do
            step "outage-$server" "$bin" outage "$server" --out "$results/outage-$server.json"
        done
    fi
    if ! skipped soak; then
        for store in sqlite redis; do
            step "soak-$store" "$bin" soak "$store" --seconds "$soak_s" \
                --out "$results/soak-$store.json"
        done
    fi
    if ! skipped scale; then
        scratch=$(mktemp -d)
        urls=${RELIABILITY_SCALE_URLS:-"sqlite://$scratch/scale.db file://$scratch/scale-files"}
        for url in $urls; do
            name=$(echo "$url" | sed -E 's#^([a-z+-]+)://.*#\1#; s#[^a-z0-9]+#-#g')
            step "scale-$name" "$bin" scale "$url" --sessions "$sessions" \
                --out "$results/scale-$name.json"
        done
        rm -rf "$scratch"
    fi
fi

# The report.
python3 - "$results" "$root/RELIABILITY.md" "$root/reliability/FINDINGS.md" <<'PY'
import csv, glob, json, os, platform, subprocess, sys, datetime

results, out, findings = sys.argv[1:4]

def load(name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""

def yes(ok):
    return "yes" if ok else "**NO**"

def ms(v):
    return "-" if v is None else f"{v:,.0f}"

def recorded(runs):
    """When and with which harness build the results in `runs` were recorded."""
    runs = [r for r in runs if r]
    if not runs:
        return ""
    dates = sorted(r.get("date", "?")[:16].replace("T", " ") for r in runs)
    builds = sorted({"debug" if "/debug/" in r.get("command", "") else "release" for r in runs})
    when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}"
    return f"Recorded {when} UTC, {' and '.join(builds)} harness build{'s' if len(builds) > 1 else ''}."

def table(header, align, runs, row):
    """A results table: `header` and `align`, then `row(name, run)` for each (name, run)
    pair in `runs` that has a run, or one "not run yet" row when none has; then when
    the runs were recorded, between blank lines."""
    ran = [(name, r) for name, r in runs if r]
    w(header)
    w(align)
    for name, r in ran:
        w(row(name, r))
    if not ran:
        w("| _not run yet_ " + "| " * (header.count("|") - 2) + "|")
    w("")
    w(recorded([r for _, r in ran]))
    w("")

def section(title, intro):
    """A section's title and its opening paragraph."""
    w(f"## {title}")
    w("")
    w(intro)
    w("")

def runs_of(kind, names):
    """(name, run) for each of `names`: the run in `{kind}-{name}.json`, if any."""
    return [(name, load(f"{kind}-{name}.json")) for name in names]

def read(name):
    path = os.path.join(results, name)
    return open(path).read().strip() if os.path.exists(path) else "?"

mode = read("mode")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
lines = []
w = lines.append
w("# Reliability")
w("")
w("The campaign of issue 12: fuzzing, crash safety, outages under load, soak and scale.")
w("Generated by `scripts/reliability.sh` from `reliability/results/`; do not edit by hand.")
w("")
w(f"- Generated: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; the last campaign"
  f" run was mode `{mode}` (`quick` figures are short runs; `scripts/reliability.sh full` gives the issue's figures)")
w("- Steps are also re-run one by one, so each section says when its figures were recorded and"
  " with which harness build (a debug build's latencies are pessimistic)")
w(f"- Machine generating this file (earlier sections may come from another): {platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem};"
  " shared with other jobs while measured, so times are upper bounds")
w(f"- Commit when generated: `{sh('git rev-parse --short HEAD')}`")
w("")

section("Fuzzing",
        "`scripts/fuzz.sh SECONDS` runs each cargo-fuzz target (`fuzz/fuzz_targets/`) for SECONDS"
        " from the committed seeds (`fuzz/seeds/`). Goal: at least 10 million executions or one"
        " hour per target, with 0 crashes.")
what = {
    "cookie_header": "`Cookie` header parsing (`codec`), through a session manager",
    "sealed_encrypted": "opening encrypted client-side cookies (raw and validly sealed payloads)",
    "sealed_signed": "opening signed client-side cookies (raw and validly sealed payloads)",
    "record_json": "the at-rest record JSON of Memcached items, files and Redis's `r` field",
    "fs_record": "the file store reading a damaged session file (load, lists, purge)",
    "sqlite_row": "the SQLite store reading a damaged row, any column of any type",
    "store_url": "store URL parsing and redaction (`cloakroom-stores`)",
    "demo_json": "the demo's JSON request bodies, through the whole app",
}
fuzz = os.path.join(results, "fuzz.tsv")
if os.path.exists(fuzz):
    w("| target | what | seconds | executions | exec/s | crashes | corpus | goal met |")
    w("|---|---|---:|---:|---:|---:|---:|---|")
    with open(fuzz) as f:
        rows = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: r["target"])
    for r in rows:
        execs, secs, crashes = int(r["executions"]), int(r["seconds"]), int(r["crashes"])
        goal = crashes == 0 and (execs >= 10_000_000 or secs >= 3600)
        w(f"| `{r['target']}` | {what.get(r['target'], '')} | {secs:,} | {execs:,} |"
          f" {int(r['execs_per_s']):,} | {crashes} | {r['corpus']} | {yes(goal)} |")
    w("")
    dates = sorted(r["date"] for r in rows)
    when = f"{dates[0]} – {dates[-1]}" if dates else "?"
    w(f"Targets finished between {when} (each on the tree of its day); command per target:"
      " `scripts/fuzz.sh SECONDS TARGET` (with `FUZZ_RUNS=10000000`, a target stops at"
      " 10 million executions). The 2026-12-06 runs shared the two cores with builds, so"
      " their exec/s are low.")
else:
    w("_Not run yet: `scripts/fuzz.sh 60`._")
w("")

section("Crash safety",
        "A writer process inserts sessions and bumps a counter session with compare-and-set,"
        " printing an acknowledgement after each write returns; it is SIGKILLed after a random"
        " 0–100 ms of writing, and the store is reopened: every acknowledged write must be there,"
        " every record must load (plus `PRAGMA integrity_check` for SQLite, every file decoding"
        " for the file store), and the store must open. Goal: 1,000 kills each, 0 failures.")
def crash_row(store, r):
    x = r["report"]
    return (f"| {store} | {x['kills']:,} | {x['acked_writes']:,} | {x['lost_writes']} | {x['corrupt_records']} |"
            f" {x['open_failures']} | {x['final_records']:,} | {x['seconds']:.0f} | {yes(r['passed'])} |")
table("| store | kills | acknowledged writes | lost | corrupt | failed opens | records at end | seconds | passed |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---|",
      runs_of("crash", ["sqlite", "file"]), crash_row)
w("Command: `reliability crash STORE --kills N` (CI: `cargo test -p cloakroom-reliability --test crash_safety`, 30 kills each).")
w("")

section("Outages under load",
        "Each server runs as a private instance on a spare loopback port (the shared servers are"
        " never touched). Eight clients increment their sessions' counters through an in-process"
        " axum app (the store behind `SessionLayer`); the server is SIGKILLed (Memcached: frozen"
        " with SIGSTOP, since a restarted Memcached is empty by design) for 4 s and brought back."
        " Goal: every 503 carries `Retry-After`, no request outlives the operation timeout by"
        " much, quick recovery, 0 acknowledged writes lost.")
def outage_row(server, r):
    x = r["report"]
    return (f"| {server} | {x['mode']} | {x['requests']:,} | {x['ok']:,} | {x['unavailable']:,} |"
            f" {x['unavailable_without_retry_after']} | {x['other_statuses']} | {ms(x['slowest_ms'])} |"
            f" {ms(x['operation_timeout_ms'])} | {ms(x['down_ms'])} | {ms(x['recovery_ms'])} |"
            f" {x['acked_increments']:,} | {x['lost_increments']} | {yes(r['passed'])} |")
outages = runs_of("outage", ["redis", "postgres", "mysql", "memcached"])
table("| server | outage | requests | 200 | 503 | 503 without Retry-After | other | slowest ms | operation timeout ms | down ms | recovery ms | acknowledged | lost | passed |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
      outages, outage_row)
problems = [f"{server}: {p}" for server, r in outages if r for p in r["report"].get("problems", [])]
w("Recovery: from the server answering again to the first 200 of a request sent after."
  " Command: `reliability outage SERVER` (CI: `cargo test -p cloakroom-reliability --test outage`, Redis only).")
if problems:
    w("")
    w("Problems recorded:")
    w("")
    for p in problems[:20]:
        w(f"- {p}")
w("")

section("Soak",
        "Full load (8 clients, no pause: increments, reads, and a logout every 50th request so the"
        " store stays bounded) on SQLite and on a private Redis. Goal (10 minutes): resident memory"
        " flat within 10% after the first window, p99 stable, 0 errors.")
def soak_row(store, r):
    x = r["report"]
    return (f"| {store} | {x['seconds']:.0f} | {x['requests']:,} | {x['throughput']:,.0f} | {x['errors']} |"
            f" {x['rss_baseline_kib']/1024:.1f} | {x['rss_max_kib']/1024:.1f} | {x['rss_growth_pct']:.1f} |"
            f" {x['p99_first_ms']:.2f} | {x['p99_last_ms']:.2f} | {x['p99_max_ms']:.2f} | {yes(r['passed'])} |")
table("| store | seconds | requests | req/s | errors | RSS baseline MiB | RSS max MiB | growth % | p99 first ms | p99 last ms | p99 worst ms | passed |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
      runs_of("soak", ["sqlite", "redis"]), soak_row)
w("Command: `scripts/soak.sh SECONDS` (or `reliability soak STORE --seconds N`).")
w("")

section("Adversarial scale",
        "One user with N sessions: the time to list them, revoke all but one, revoke all (after"
        " inserting them again), and purge as many expired sessions. Every operation must finish"
        " (batched, server-side).")
def scale_row(_, r):
    x = r["report"]
    errors = "; ".join(x["errors"]) or "0"
    name = x["store"]
    if "/tmp/" in name:
        name = name.split("://")[0] + "://(temporary)"
    return (f"| `{name}` | {x['sessions']:,} | {x['insert_s']:.2f} | {x['list_s']:.3f} | {x['listed']:,} |"
            f" {x['revoke_others_s']:.3f} | {x['revoke_all_s']:.3f} | {x['purge_s']:.3f} | {x['purged']:,} | {errors} |")
table("| store | sessions | insert s | list s | listed | revoke others s | revoke all s | purge s | purged | errors |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
      [(None, json.load(open(path))) for path in sorted(glob.glob(os.path.join(results, "scale-*.json")))],
      scale_row)
w("Redis and Memcached expire records themselves (a TTL on every key), so their purge has"
  " nothing to delete: 0 purged is their expected figure, and their expired sessions are"
  " gone without it.")
w("")
w("Command: `reliability scale STORE-URL --sessions N` (any `cloakroom` store URL; for the"
  " shared servers e.g. `postgres://postgres@127.0.0.1/test?table=scale_t`).")
w("")

if os.path.exists(findings):
    w(open(findings).read().rstrip())
    w("")

w("## Regenerating")
w("")
w("```")
w("scripts/reliability.sh quick    # short runs (~25 min on 2 cores)")
w("scripts/reliability.sh full     # the issue's figures (~10 h)")
w("scripts/reliability.sh report   # only rewrite this file from reliability/results/")
w("scripts/fuzz.sh 60              # fuzz only, 60 s per target")
w("scripts/soak.sh 600             # soak only")
w("```")
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"reliability: wrote {out}")
PY

if [[ ${#failed[@]} -ne 0 ]]; then
    echo "reliability: targets missed in: ${failed[*]}" >&2
    exit 1
fi
