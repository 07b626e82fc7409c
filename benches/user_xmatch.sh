#!/usr/bin/env bash
# The user-table cross-match of docs/benchmarks.md alone (run_all.sh runs it with the rest):
#
#     benches/user_xmatch.sh [ROWS]          (default 10,000,000)
#
# Generates a release (`skyshard gen --seed 1`), ingests it, serves it with `--auth optional` and two workers, and
# runs benches/peers/user_xmatch_peer.py: a user table of every object made from a query, cross-matched with the
# catalog within 1 arcsec by skyshard and by DuckDB over the same rows. Output also in benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyshard-target}"
work="$(mktemp -d "${TMPDIR:-/tmp}/skyshard-uxm.XXXXXX")"
mkdir -p benches/results
out="benches/results/user-xmatch-$(date -u +%Y%m%d-%H%M).txt"
skyshard="$CARGO_TARGET_DIR/release/skyshard"
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
{
  echo "# user table x catalog cross-match: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $rows rows"
  echo "machine: $(nproc) cores; DuckDB $(python3 -c 'import duckdb; print(duckdb.__version__)')"
} | tee "$out"
cargo build --release --workspace --bins --quiet
"$skyshard" gen --rows "$rows" --out "$work/g" --seed 1 >/dev/null
"$skyshard" ingest --data-dir "$work/d" --table sky.object --input "$work/g/object.parquet" --ra ra --dec dec \
  --id id --quiet
"$skyshard" user add --data-dir "$work/d" bench >/dev/null
token=$("$skyshard" token create --data-dir "$work/d" --user bench 2>/dev/null)
"$skyshard" serve --data-dir "$work/d" --port 0 --workers 2 --auth optional >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 600); do
  url=$(sed -n 's/^TAP service at \(http[^ ]*\).*/\1/p' "$work/serve.log")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/serve.log"; exit 1; }
python3 benches/peers/user_xmatch_peer.py "$url" "$token" "$work/g/object.parquet" "$work" 2>&1 | tee -a "$out"
echo "raw output: $out"
