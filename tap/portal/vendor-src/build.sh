#!/usr/bin/env bash
# Bundles the portal's third-party code (CodeMirror 6, pinned in package.json and package-lock.json) into one ES
# module, ../vendor/codemirror.js, and records the licences of what went in (../vendor/LICENSES.md). Its output is
# committed: building or running skyshard never needs Node. `.ci/run` runs this again and fails if the output differs.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
out=../vendor
mkdir -p "$out"
./node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --legal-comments=none \
  --target=es2020 --outfile="$out/codemirror.js" --log-level=warning
node licenses.mjs > "$out/LICENSES.md"
