#!/usr/bin/env bash
# Every peer comparison of docs/benchmarks.md in one run, on one machine, with one build:
#
#     benches/run_all.sh [ROWS]          (default 10,000,000; a quick check: benches/run_all.sh 1000000)
#
# Builds the release binary, generates a synthetic release (`skyshard gen --seed 1`), partitions it (against
# hats-import on the same file when it is installed: pip install hats-import), ingests it, serves it with
# `skyshard serve --workers 2`, and runs the query, cross-match and TAP benchmarks against DuckDB over the same
# Parquet file. The raw output of every step goes to benches/results/run-DATE.txt (printed at the end); the
# numbers in docs/benchmarks.md's "Same-run comparison" section are copied from such a file.
# Needs: python3 with duckdb (pip install duckdb); about 4 GB of disk and 3 GB of memory for 10 M rows.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyshard-target}"
work="$(mktemp -d "${TMPDIR:-/tmp}/skyshard-bench.XXXXXX")"
mkdir -p benches/results
out="benches/results/run-$(date -u +%Y%m%d-%H%M).txt"
skyshard="$CARGO_TARGET_DIR/release/skyshard"
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log() { echo "$*" | tee -a "$out"; }
# Runs a step, its output both shown and kept.
step() {
  log ""
  log "## $1"
  shift
  "$@" 2>&1 | tee -a "$out"
}

: >"$out"
log "# skyshard benchmarks, one run: $(date -u +%FT%TZ)"
log "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)'), $rows rows"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo)," \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
log "peers: DuckDB $(python3 -c 'import duckdb; print(duckdb.__version__)')," \
  "hats-import $(python3 -c 'import hats_import; print(hats_import.__version__)' 2>/dev/null || echo 'not installed')"

cargo build --release --workspace --bins --quiet
timed() { /usr/bin/time -f "%e s wall, peak %M KB" "$@"; }

step "gen" timed "$skyshard" gen --rows "$rows" --out "$work/g" --seed 1
step "partition (skyshard)" timed "$skyshard" partition --input "$work/g/object.parquet" --out "$work/p"
if python3 -c 'import hats_import' 2>/dev/null; then
  step "partition (hats-import, same file)" timed python3 benches/peers/hats_import_peer.py \
    "$work/g/object.parquet" "$work/hats"
  rm -rf "$work/hats"
else
  log "SKIPPED: hats-import is not installed (pip install hats-import)"
fi
rm -rf "$work/p"
step "ingest (partition + index + publish)" timed "$skyshard" ingest --data-dir "$work/d" --table sky.object \
  --input "$work/g/object.parquet" --ra ra --dec dec --id id --quiet

# A user for the user-table cross-match (anonymous callers still query under --auth optional).
"$skyshard" user add --data-dir "$work/d" bench >/dev/null
token=$("$skyshard" token create --data-dir "$work/d" --user bench 2>/dev/null)

# The service, on a free port; its first line names the TAP URL. The 100 benchmark clients stand for 100 users but
# come from one address: its share of sync queries is raised to let them all in.
"$skyshard" serve --data-dir "$work/d" --port 0 --workers 2 --caller-sync 1000 --auth optional \
  >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 600); do
  url=$(sed -n 's/^TAP service at \(http[^ ]*\).*/\1/p' "$work/serve.log")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/serve.log"; echo "the service did not start" >&2; exit 1; }
log "service: $url (pid $serve_pid)"

step "queries against DuckDB" python3 benches/peers/queries_peer.py "$url" "$work/g/object.parquet"
step "cross-match within 2 arcsec against DuckDB" python3 benches/peers/xmatch_peer.py "$url" \
  "$work/g/object.parquet"
step "user table cross-match within 1 arcsec against DuckDB" python3 benches/peers/user_xmatch_peer.py "$url" \
  "$token" "$work/g/object.parquet" "$work"
step "TAP cones, 1 and 100 clients" python3 benches/tap_bench.py cones "$url"
step "TAP output, BINARY2 and Parquet" python3 benches/tap_bench.py output "$url" --pid "$serve_pid" \
  --rows "$rows"

echo
echo "raw output: $out"
