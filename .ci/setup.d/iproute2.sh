#!/usr/bin/env bash
# The Phase 1 test bed (examples/phase1/bed.sh, TestShortDemo) makes network
# namespaces, veth pairs and a bridge with 'ip' and rate-limits with 'tc'
# (both from iproute2); flock comes from util-linux.
set -euo pipefail
if command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
