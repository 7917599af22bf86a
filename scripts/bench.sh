#!/usr/bin/env bash
# make bench: runs the benchmarks and merges their figures into bench.json,
# one flat JSON object shared by all benchmarks (keys from other runs stay).
# Figures are from this machine and its noise: compare ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_JSON:-bench.json}
LOG=$(mktemp)
trap 'rm -f "$LOG" "$LOG.json"' EXIT

run() { # run KEY-PREFIX PKG BENCH-REGEX BENCHTIME
  echo "== go test -bench '$3' -benchtime $4 $2" >&2
  go test -run '^$' -bench "$3" -benchtime "$4" -count 1 "$2" 2>&1 | grep -v '^time=' | tee /dev/stderr |
    awk -v p="$1" '/^Benchmark/ { $1 = p $1 } { print }' >> "$LOG"
}

# PostgreSQL for the store benchmark: the caller's, or a throw-away one.
if [ -z "${POSTURE_TEST_DATABASE_URL:-}" ]; then
  POSTURE_TEST_DATABASE_URL="$(bash scripts/pg-ephemeral.sh start)"
  export POSTURE_TEST_DATABASE_URL
  trap 'bash scripts/pg-ephemeral.sh stop >/dev/null 2>&1 || true; rm -f "$LOG" "$LOG.json"' EXIT
fi

run "" ./hub/server/ 'BenchmarkTimeToNoncompliant$' 1x
run "" ./hub/server/ 'BenchmarkCredentialFixToWrite$' 5x # credential_fix_to_write_ms (target ≤ 5000)
run sqlite_ ./hub/store/sqlite/ 'BenchmarkRecordResults' 200x
run postgres_ ./hub/store/postgres/ 'BenchmarkRecordResults' 200x
run "" ./hub/compliance/ 'BenchmarkEvaluate$' 2000x
run sync_ ./hub/sync/ 'BenchmarkWorker$' 2000x
# Recheck pressed → the portal's JSON API shows the new state (>= 100 rechecks).
run "" ./hub/server/ 'BenchmarkRecheck$' 1x
# posture.ext against the osqueryd stand-in and the fake hub (issue 11).
run "" ./extension/ 'BenchmarkExtension' 1x
# A spool filled to its 64 MiB cap: memory to open it, time and peak RSS to compact it.
run "" ./extension/spool/ 'BenchmarkOpenFullSpool$|BenchmarkCompactFullSpool$' 1x

# Benchmark lines → flat keys: metric "p50_ms" of BenchmarkTimeToNoncompliant
# becomes time_to_noncompliant_p50_ms; ns/op of sub-benchmarks becomes
# <name>_<sub>_ns_per_op.
awk '
$1 ~ /Benchmark/ { # first field only: log lines may name a benchmark
  name = $1; sub(/-[0-9]+$/, "", name); sub(/Benchmark/, "", name)
  gsub(/\//, "_", name)
  # CamelCase → snake_case
  out = ""
  for (i = 1; i <= length(name); i++) {
    c = substr(name, i, 1)
    if (c ~ /[A-Z]/ && i > 1 && substr(name, i-1, 1) != "_") out = out "_"
    out = out tolower(c)
  }
  for (i = 3; i + 1 <= NF; i += 2) {
    unit = $(i+1); val = $i
    gsub(/\//, "_per_", unit); gsub(/[^A-Za-z0-9_]/, "_", unit)
    printf "%s_%s\t%s\n", out, unit, val
  }
}' "$LOG" > "$LOG.tsv"

# Friendly names the issues ask for.
jq -Rn '
  [inputs | split("\t") | {key: .[0], value: (.[1] | tonumber)}] | from_entries
  | . + {
      time_to_noncompliant_p50_ms: .time_to_noncompliant_p50_ms,
      time_to_noncompliant_p99_ms: .time_to_noncompliant_p99_ms,
      graph_writes_per_transition: .time_to_noncompliant_writes_per_transition,
      graph_writes_for_unchanged_results: .time_to_noncompliant_unchanged_writes,
      recheck_p50_ms: .recheck_p50_ms,
      recheck_p95_ms: .recheck_p95_ms,
      ext_idle_rss_mb: .extension_footprint_idle_rss_mb,
      ext_busy_rss_mb: .extension_footprint_busy_rss_mb,
      ext_cpu_ms_per_run: .extension_footprint_cpu_ms_per_run,
      ext_binary_mb: .extension_footprint_binary_mb,
      osqueryd_restart_to_results_ms: .extension_recovery_osqueryd_restart_to_results_ms,
      hub_restart_to_results_ms: .extension_recovery_hub_restart_to_results_ms,
      ext_silent_drop_to_table_ms: .extension_recovery_silent_drop_to_table_ms,
      spool_full_open_heap_mib: .open_full_spool_heap_inuse_MiB,
      spool_full_open_rss_mib: .open_full_spool_rss_MiB,
      spool_full_compact_ms: ((.compact_full_spool_ns_per_op // null) | if . == null then null else . / 1e6 end),
      spool_full_compact_peak_rss_mib: .compact_full_spool_peak_rss_MiB
    }
  | with_entries(select(.key | (startswith("extension_") or startswith("open_full_spool_") or startswith("compact_full_spool_")) | not))
  | with_entries(select(.value != null))
' < "$LOG.tsv" > "$LOG.json"
rm -f "$LOG.tsv"
if [ -f "$OUT" ]; then
  jq -s '.[0] * .[1]' "$OUT" "$LOG.json" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
else
  mv "$LOG.json" "$OUT"
fi
echo "wrote $OUT:" >&2
jq . "$OUT"
