#!/usr/bin/env bash
# ui's browser test (TestBrowserStatusPage) drives headless Chromium through
# the DevTools protocol (chromedp). Installs Debian's chromium if missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
