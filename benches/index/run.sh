#!/usr/bin/env bash
# The metadata-store benchmark of docs/benchmarks.md: skyshard's file store against the RocksDB store it replaced,
# same machine, same run. Usage: benches/index/run.sh [IDS]   (default 100,000,000; needs ~6 GB of disk, ~2 GB RAM
# for RocksDB's in-memory sort). Writes the raw JSON lines to benches/index/results.jsonl as well as stdout.
# The RocksDB side needs libclang (apt-get install libclang-dev) to build; without it only the file store runs.
set -euo pipefail
cd "$(dirname "$0")"
ids="${1:-100000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyshard-target}"
stores=(files)
if cargo build --release --quiet --features rocksdb 2>/dev/null; then
  stores+=(rocksdb)
else
  echo "RocksDB did not build here (no libclang?); measuring the file store only" >&2
  cargo build --release --quiet
fi
bin="$CARGO_TARGET_DIR/release/index-bench"
scratch="${BENCH_DIR:-$HOME/.cache/skyshard-index-bench}"
out=results.jsonl
: >"$out"
for s in "${stores[@]}"; do
  for phase in build query jobs; do
    dir="$scratch/$s"
    [ "$phase" = jobs ] && dir="$scratch/$s-jobs"
    "$bin" "$s" "$phase" "$dir" "$ids" | tee -a "$out"
  done
  rm -rf "$scratch/$s" "$scratch/$s-jobs"
done
echo "host: $(nproc) cores, $(uname -r), $(date -u +%F)" | tee -a "$out"
