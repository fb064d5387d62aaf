#!/usr/bin/env bash
# sync/discovery's DNS hint tests start dnsmasq (a real DNS server) on a
# loopback port; only the binary is needed (dnsmasq-base has no service).
set -euo pipefail
if command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null
