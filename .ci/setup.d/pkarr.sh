#!/usr/bin/env bash
# sync/discovery's interop tests run the pkarr npm package (an independent
# PKARR implementation: relay and client) from sync/discovery/testdata/js.
set -euo pipefail
cd "$(dirname "$0")/../../sync/discovery/testdata/js"
if grep -q '"version": "1.3.0"' node_modules/pkarr/package.json 2>/dev/null; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
