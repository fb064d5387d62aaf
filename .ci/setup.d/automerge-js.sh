#!/usr/bin/env bash
# Installs JavaScript Automerge (@automerge/automerge 3.x, pinned by the
# committed package-lock.json) for crdt's interop test (TestJSInterop).
# Idempotent and quiet; needs node and npm (installed from apt if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
dir=crdt/testdata/js
if [ -f "$dir/node_modules/@automerge/automerge/package.json" ]; then
  exit 0
fi
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "automerge-js: installed $(node -p "require('./$dir/node_modules/@automerge/automerge/package.json').version")"
