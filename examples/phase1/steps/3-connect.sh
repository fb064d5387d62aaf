# Step 3 (spec pack, section 5, "Service consumption"): an external client
# discovers the peer by its identity hash and connects after verification.
# Reaching a peer by identity (expose/connect, issue 19) does not exist yet:
# what the client can do today is find and verify a host by identity alone.
step "Service consumption: the external client discovers by identity hash, verifies, connects"

check "client: finds host1 by its identity alone (PKARR; no address given) and verifies it" \
  resolved client host1 pkarr --pkarr "$PKARR"
check "client: the profile it names is host1's, verified" \
  sl client fetch-profile "${ID[host1]}" "$(first "$(sed -n 's/.*"profile": "\(sha256:[0-9a-f]*\)".*/\1/p' <<<"$OUT")")" --addr "${IP[host1]}:7414"
pending "client: discovers the counter peer by its identity ($COUNTER) and connects to it after verification (issue 19: expose/connect)"
