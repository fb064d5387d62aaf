#!/usr/bin/env bash
# ui's browser test (TestBrowserStatusPage) drives headless Chromium through
# the DevTools protocol (chromedp). Installs Debian's chromium if missing;
# idempotent, and quiet unless the installation fails.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
