#!/usr/bin/env bash
# The Python and browser suites three times in a row on a loaded machine (a CPU burner on each core), on a copy of
# the debug binary (so a build meanwhile does not change what is tested). Each run's whole output stays in
# /tmp/loaded-{py,br}-N.log. VENV: a virtual environment with tests/python/requirements.txt (default /tmp/venvtest).
set -u
cp "${CARGO_TARGET_DIR:-$HOME/.cache/skyshard-target}/debug/skyshard" /tmp/skyshard-loaded
export SKYSHARD=/tmp/skyshard-loaded PATH=${VENV:-/tmp/venvtest}/bin:$PATH
cd "$(dirname "$0")/.."
python3 -c "while True: pass" & b1=$!
python3 -c "while True: pass" & b2=$!
trap 'kill $b1 $b2 2>/dev/null' EXIT
for i in 1 2 3; do
  start=$(date +%s)
  python -m pytest -q -rfE -p no:cacheprovider tests/python -W ignore > /tmp/loaded-py-$i.log 2>&1
  tail -3 /tmp/loaded-py-$i.log
  node --test --test-concurrency=1 tests/browser/portal.test.mjs tests/browser/login.test.mjs > /tmp/loaded-br-$i.log 2>&1
  grep -E "^# (pass|fail)" /tmp/loaded-br-$i.log
  echo "run $i: $(( $(date +%s) - start )) s"
done
