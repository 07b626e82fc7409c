#!/usr/bin/env bash
# A coverage-guided run of the HTTP fuzz target:
#
#     fuzz/http/run.sh [SECONDS]        (default 600)
#
# Builds the target with skyshard's crates instrumented (sancov, stable rustc) in a target directory of its own
# (the first build compiles the dependencies there once: about 20 minutes on 2 cores), then fuzzes from the
# committed seeds with a scratch corpus. A crash is written to ./crash-* and printed; add it to fuzz/http/seeds
# once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-600}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/skyshard-fuzz-target}"
RUSTC_WRAPPER="$PWD/fuzz/http/sancov-rustc.sh" cargo build --workspace --bin http
corpus="${FUZZ_CORPUS:-$(mktemp -d)}"
"$CARGO_TARGET_DIR/debug/http" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
  "$corpus" fuzz/http/seeds
