# Step 1 (spec pack, section 5, "Host onboarding"): install the substrate on
# two hosts, publish capability profiles via PKARR, DNS hints and an
# out-of-band token, and the owner verifies the hosts' identities.
# Sourced by bed.sh (its helpers: step, check, refuse, expect, on, sl, start).
step "Host onboarding: two hosts install, publish capability profiles (PKARR, DNS hints, out-of-band token); the owner verifies their identities"

for h in host1 host2; do
  check "$h: declares its capability profile (a profile card)" sl "$h" append "$PHASE1/profile-$h.yaml"
  up "$h" host "$(inner "$h")"
  check "$h: instance up, host role, identity ${ID[$h]}" wait_up "$h"
  start "$h" link "$FAULTYLINK" -listen "${IP[$h]}:7411" -to "$(inner "$h")" -seed "${NUM[$h]}" -control "$WORK/link.conf"
  check "$h: reachable only through its faulty link at ${IP[$h]}:7411 ($(tr '\n' ' ' <"$WORK/link.conf"))" \
    poll 10 on owner bash -c "exec 3<>/dev/tcp/${IP[$h]}/7411"
  # 'sublog up' does not answer fetch-profile yet: 'serve --public' does,
  # on the same home (through the instance).
  start "$h" public "$SUBLOG" --home "$WORK/$h" serve --listen "$(inner_serve "$h")" --public "${IP[$h]}:7414"
  check "$h: answers identity proofs and profile requests at ${IP[$h]}:7414" \
    poll 10 on owner bash -c "exec 3<>/dev/tcp/${IP[$h]}/7414"
  check "$h: publishes its address and newest profile to the PKARR relay ($PKARR)" \
    sl "$h" publish --pkarr "$PKARR" --addr "${IP[$h]}:7411" --profile
  expect "published to $PKARR"
  check "$h: signs an out-of-band token (identity, address, profile, 1 h expiry)" \
    sl "$h" token --addr "${IP[$h]}:7411" --profile --expires 1h
  printf '%s\n' "$OUT" >"$WORK/oob/$h.token"
  printf '_sublog.%s %s\n' "$DOMAIN" "$OUT" >>"$WORK/zone"
done
check "both tokens are published as DNS hints (TXT _sublog.$DOMAIN at $DNS)" \
  test "$(grep -c "^_sublog.$DOMAIN " "$WORK/zone")" = 2

# resolved NODE HOST SOURCE ARGS...: NODE resolves HOST's identity with ARGS
# (no cache); the answer must be HOST's address, found by SOURCE, proved.
resolved() {
  local n=$1 h=$2 src=$3
  shift 3
  local out
  out=$(sl "$n" --json resolve "${ID[$h]}" --no-cache --timeout 20s "$@") || { echo "$out"; return 1; }
  echo "$out"
  grep -q "\"identity\": \"${ID[$h]}\"" <<<"$out" &&
    grep -q "\"addr\": \"${IP[$h]}:7411\"" <<<"$out" &&
    grep -q "\"source\": \"$src\"" <<<"$out" &&
    grep -q "the peer proved ${ID[$h]}" <<<"$out"
}
for h in host1 host2; do
  tok=$(cat "$WORK/oob/$h.token")
  check "owner: $h by its out-of-band token: proved by its handshake at ${IP[$h]}:7411" resolved owner "$h" token --token "$tok"
  check "owner: $h through PKARR, no address given: found and proved" resolved owner "$h" pkarr --pkarr "$PKARR"
  check "owner: $h through DNS hints ($DOMAIN): found and proved" resolved owner "$h" dns --dns "$DOMAIN" --dns-server "$DNS"
  check "owner: given all three, the out-of-band token is used first (Phase 1 order: token, PKARR, DNS)" \
    resolved owner "$h" token --token "$tok" --pkarr "$PKARR" --dns "$DOMAIN" --dns-server "$DNS"
  cpu=$(sed -n 's/^cpu: //p' "$PHASE1/profile-$h.yaml")
  check "owner: $h's capability profile (by the card ID its token names) verifies as signed by $h: cpu $cpu millicores, its roles" \
    sl owner fetch-profile --token "$tok" --addr "${IP[$h]}:7414"
  expect "verified \(signed by it"
  expect "of ${ID[$h]}"
  expect "cpu: $cpu\$"
  expect "roles:"
done

# What fails verification is refused.
lie=$(sl host1 token --addr "${IP[host2]}:7411" --expires 1h)
refuse "owner: a token signed by host1 that points at host2's address is refused (host2 cannot prove host1's identity)" \
  resolved owner host1 token --token "$lie"
tok=$(cat "$WORK/oob/host1.token")
bad=${tok:0:30}$([ "${tok:30:1}" = A ] && echo B || echo A)${tok:31}
refuse "owner: a token with one character changed is refused" sl owner resolve "${ID[host1]}" --no-cache --token "$bad"
refuse "owner: host2's profile is not accepted as host1's" \
  sl owner fetch-profile "${ID[host1]}" "$(sed -n 's/.*"profile": "\(sha256:[0-9a-f]*\)".*/\1/p' <<<"$(sl owner --json resolve "${ID[host2]}" --no-cache --token "$(cat "$WORK/oob/host2.token")")")" --addr "${IP[host2]}:7414"

for h in host1 host2; do
  check "owner: trusts $h (verified above) under the name $h" sl owner trust "${ID[$h]}" --name "$h"
done
