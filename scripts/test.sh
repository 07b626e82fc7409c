#!/usr/bin/env bash
# The README's test command: Rust tests, the IVOA ADQL conformance collection, differential tests in Python.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyshard-target}"

cargo build --workspace --bins --tests
cargo test --workspace

skyshard="$CARGO_TARGET_DIR/debug/skyshard"
# The IVOA ADQL query collection (lyonetia), when ../shared/conformance is beside the checkout: all 484 queries
# must be classified right but the five of ivoa/X1_obscore_eso.xml that call ESO's own functions (ESO_INTERSECTION,
# eso_dateadd_sec), which this service does not declare.
scorer="../shared/conformance/run_lyonetia.py"
if [ -f "$scorer" ]; then
  out=$(python3 "$scorer" -v -- "$skyshard" adql check || true)
  summary=$(echo "$out" | grep '^lyonetia: ')
  echo "$summary"
  total=$(echo "$summary" | sed -n 's/^lyonetia: \([0-9]*\)\/\([0-9]*\).*/\2/p')
  misses=$(echo "$out" | grep -E '^[a-z]+/[A-Za-z0-9_]+\.xml: expected ' || true)
  expected_misses=$(echo "$misses" | grep -c '^ivoa/X1_obscore_eso.xml: expected valid' || true)
  other_misses=$(echo "$misses" | grep -v '^ivoa/X1_obscore_eso.xml: expected valid' | grep -c . || true)
  if [ "$total" != 484 ] || [ "$other_misses" -ne 0 ] || [ "$expected_misses" -gt 5 ]; then
    echo "lyonetia: expected 484 queries with at most the 5 ESO-function misses; got total=$total," \
      "ESO misses=$expected_misses, other misses=$other_misses:" >&2
    echo "$misses" | grep -v '^ivoa/X1_obscore_eso.xml' | head -40 >&2
    exit 1
  fi
else
  echo "SKIPPED: the IVOA ADQL conformance collection ($scorer is not beside the checkout)"
fi

# The Python side: reference engines (DuckDB, numpy, pyarrow) and the clients (astropy, pyvo), in a brand-new
# virtual environment made for this run, so the tests can only use what tests/python/requirements.txt brings (a
# package installed by hand on this machine cannot hide a missing line); the import check names a missing one at
# once. pip's own cache keeps the second run quick.
venv_dir=$(mktemp -d)
trap 'rm -rf "$venv_dir"' EXIT
python3 -m venv "$venv_dir/venv"
if ! "$venv_dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt; then
  echo "could not install the Python packages the tests need (tests/python/requirements.txt) into a new virtual" \
    "environment: is PyPI reachable?" >&2
  exit 1
fi
"$venv_dir/venv/bin/python" scripts/check_python_imports.py
export VIRTUAL_ENV="$venv_dir/venv" PATH="$venv_dir/venv/bin:$PATH"
command -v stilts >/dev/null || echo "SKIPPED: the STILTS taplint test (stilts is not installed: apt-get install stilts)"
# -rs names every skipped test and why.
SKYSHARD="$skyshard" python3 -m pytest -q -rs tests/python

# The portal in headless Chromium (tests/browser): Debian's chromium and playwright-core (`cd tests/browser && npm
# ci`). In CI both are installed by .ci/run, and their absence is an error, not a skip.
if command -v chromium >/dev/null && [ -d tests/browser/node_modules/playwright-core ]; then
  SKYSHARD="$skyshard" node --test --test-concurrency=1 tests/browser/portal.test.mjs tests/browser/login.test.mjs
elif [ -n "${CI:-}" ]; then
  echo "the browser tests need chromium and tests/browser/node_modules (cd tests/browser && npm ci)" >&2
  exit 1
else
  echo "SKIPPED: the portal's browser tests (need chromium from apt and: cd tests/browser && npm ci)"
fi
