# Step 4 (spec pack, section 5, "Revocation and recovery"): the host revokes
# consent, the peer is suspended and redeployed on the second host by
# reconciliation. Today: the revoke stops the peer at once, and a move hands
# its state to host2 by hand; the owner's reconciliation doing that by
# itself (issue 14) and the client reaching it again by the same identity
# (issue 19) replace the manual part.
step "Revocation and recovery: host1 revokes consent, the peer stops there and continues on host2 with its state"

check "host1: counter answers (3) before the revoke" sl host1 call "$COUNTER" inc
expect "^3$"
check "host1: revokes its grant ${GRANT[host1]:0:19}..." sl host1 revoke "${GRANT[host1]}"
refuse "host1: the peer no longer serves (stopped as the revoke is stored)" sl host1 call "$COUNTER" inc
check "owner: syncs with host1 and holds the revoke card" \
  bash -c "'$SUBLOG' --home '$WORK/owner' sync '${IP[host1]}:7411' >/dev/null && '$SUBLOG' --home '$WORK/owner' log '${ID[host1]}' | grep -q ' revoke '"
check "host1: hands counter's state and bundle to host2 (a handoff encrypted to host2; nothing kept here)" \
  sl host1 move "$COUNTER" --for "${ID[host2]}" --out "$WORK/oob/counter.handoff"
check "host2: takes the handoff under its own grant" sl host2 deploy --handoff "$WORK/oob/counter.handoff"
check "host2: counter continues from its state (4)" sl host2 call "$COUNTER" inc
expect "^4$"
refuse "host2: the same handoff is not taken twice" sl host2 deploy --handoff "$WORK/oob/counter.handoff"
pending "owner: reconciliation suspends the peer and redeploys it on host2 by itself after the revoke (issue 14)"
pending "client: reaches counter again by the same identity, now on host2 (issue 19)"
