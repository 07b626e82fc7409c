#!/usr/bin/env bash
# The README's test command: Rust tests, the IVOA ADQL conformance collection, differential tests in Python.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyshard-target}"

cargo build --workspace --bins --tests
cargo test --workspace

skyshard="$CARGO_TARGET_DIR/debug/skyshard"
# The IVOA ADQL query collection (lyonetia), when ../shared/conformance is beside the checkout. The five queries
# that call ESO's own functions (ESO_INTERSECTION, eso_dateadd_sec) are expected to fail here.
scorer="../shared/conformance/run_lyonetia.py"
if [ -f "$scorer" ]; then
  out=$(python3 "$scorer" -- "$skyshard" adql check || true)
  echo "$out"
  ok=$(echo "$out" | sed -n 's/^lyonetia: \([0-9]*\)\/\([0-9]*\).*/\1/p')
  total=$(echo "$out" | sed -n 's/^lyonetia: \([0-9]*\)\/\([0-9]*\).*/\2/p')
  if [ -z "$ok" ] || [ $((total - ok)) -gt 5 ]; then
    echo "lyonetia: more than the 5 known ESO-function queries misclassified" >&2
    exit 1
  fi
fi

SKYSHARD="$skyshard" python3 -m pytest -q tests/python
