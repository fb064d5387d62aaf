package caps

// The built-in specs. Their bytes are frozen: changing any field changes the
// cap ID and breaks every card that requires it (golden/caps pins them).

// CardV1 is the built-in spec of the card format defined in ARCHITECTURE.md.
var CardV1 = Spec{
	Schema:   SchemaV1,
	Name:     "card",
	Semver:   "1.0.0",
	Purpose:  "sublog card format: deterministic CBOR payload in COSE_Sign1 (EdDSA), hash-chained per author",
	Behavior: "payload fields ver,type,net,rid,ts,reqs,prov,policy_ref,content_uri,content_hash,dist_tag,body,author,seq,prev,kind; card ID = SHA-256 of the COSE_Sign1 bytes",
	DocsURI:  "ARCHITECTURE.md#cards",
}

// Crypto suites.
var (
	// SuiteEd25519COSE: Ed25519 (RFC 8032) signatures in COSE_Sign1, alg -8.
	SuiteEd25519COSE = Spec{
		Schema: SchemaV1, Name: "sig-ed25519-cose", Semver: "1.0.0",
		Purpose:  "signatures: pure Ed25519 in COSE_Sign1 (alg EdDSA -8), kid = 32-byte public key",
		Behavior: "every signature context names a domain-separation label passed as COSE external_aad",
		DocsURI:  "ARCHITECTURE.md#cards",
	}
	// SuiteHPKE: HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
	// ChaCha20-Poly1305 (RFC 9180 suite 0x0020/0x0001/0x0003).
	SuiteHPKE = Spec{
		Schema: SchemaV1, Name: "hpke-x25519-sha256-chacha20poly1305", Semver: "1.0.0",
		Purpose:  "key wrapping: HPKE base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305",
		Behavior: "recipient X25519 keys are the birational images of their Ed25519 identities; info = \"sublog/v1/capsule\"",
		DocsURI:  "ARCHITECTURE.md#capabilities-and-encryption",
	}
	// SuiteAEAD: the payload AEAD.
	SuiteAEAD = Spec{
		Schema: SchemaV1, Name: "aead-chacha20poly1305", Semver: "1.0.0",
		Purpose:  "payload encryption: ChaCha20-Poly1305 (RFC 8439) under a fresh 32-byte CEK per card, zero nonce",
		Behavior: "payload = AEAD(CEK, pad(body), AAD = canonical {net, rid, policy_ref})",
		DocsURI:  "ARCHITECTURE.md#capabilities-and-encryption",
	}
	// CapsuleV1: the policy capsule format and size-bucket padding.
	CapsuleV1 = Spec{
		Schema: SchemaV1, Name: "capsule", Semver: "1.0.0",
		Purpose:  "policy capsule: clear policy, padded HPKE key wraps, optional KEK and gate wraps, bound to {net, rid, content_hash, policy_ref}",
		Behavior: "encrypted card body = {capsule, payload}; policy_ref = SHA-256 of the policy; content_hash = SHA-256 of payload",
		DocsURI:  "ARCHITECTURE.md#capabilities-and-encryption",
	}
)

// Visibility modes.
var (
	VisPublic   = visSpec("public", "no encryption; the payload is the plain body; permanent and irrevocable")
	VisDirect   = visSpec("direct", "the CEK is HPKE-wrapped to exactly one recipient")
	VisTrustset = visSpec("trustset", "the CEK is HPKE-wrapped to each member of a named trust set")
	VisGroup    = visSpec("group", "the CEK is wrapped for a group under the keying capability the policy names")
	VisNode     = visSpec("node", "the CEK is wrapped to this node's keys (or its KEK or gate) only; distribution this_node_only")
)

func visSpec(mode, behavior string) Spec {
	return Spec{
		Schema: SchemaV1, Name: "visibility-" + mode, Semver: "1.0.0",
		Purpose:  "visibility mode " + mode + " of the policy capsule",
		Behavior: behavior,
		DocsURI:  "ARCHITECTURE.md#capabilities-and-encryption",
	}
}

// GroupHPKEFanout is the group keying of version 1: the CEK is HPKE-wrapped
// to each member. An MLS keying will be a new capability beside it.
var GroupHPKEFanout = Spec{
	Schema: SchemaV1, Name: "group-keying-hpke-fanout", Semver: "1.0.0",
	Purpose:  "group keying: the CEK is HPKE-wrapped to each member of the group; the roster stays private",
	Behavior: "wraps are anonymous and padded to the capsule's wrap buckets; readers try each wrap",
	DocsURI:  "ARCHITECTURE.md#capabilities-and-encryption",
}

// Revocation mechanisms.
var (
	RevokeCRL = Spec{
		Schema: SchemaV1, Name: "revocation-crl", Semver: "1.0.0",
		Purpose: "card revocation lists: crl cards list card IDs honest readers stop showing",
		DocsURI: "ARCHITECTURE.md#capabilities-and-encryption",
	}
	RevokeShred = Spec{
		Schema: SchemaV1, Name: "revocation-crypto-shred", Semver: "1.0.0",
		Purpose: "crypto-shred: the CEK is wrapped under a local KEK; deleting the KEK makes the payload unreadable here",
		DocsURI: "ARCHITECTURE.md#capabilities-and-encryption",
	}
	RevokeGate = Spec{
		Schema: SchemaV1, Name: "revocation-online-gate", Semver: "1.0.0",
		Purpose: "strong revocation: the CEK is wrapped to a gate identity that releases it to authorised requesters until disabled",
		DocsURI: "ARCHITECTURE.md#capabilities-and-encryption",
	}
)

// Atomic lists the built-in atomic capabilities.
var Atomic = []Spec{CardV1, SuiteEd25519COSE, SuiteHPKE, SuiteAEAD, CapsuleV1,
	VisPublic, VisDirect, VisTrustset, VisGroup, VisNode, GroupHPKEFanout,
	RevokeCRL, RevokeShred, RevokeGate}

// CoreV1 is a bundle of everything a sublog v1 node implements.
var CoreV1 = func() Spec {
	s := Spec{Schema: SchemaV1, Name: "sublog-core", Semver: "1.0.0",
		Purpose: "bundle: the card format, crypto suites, visibility modes, group keying and revocation of sublog v1",
		DocsURI: "ARCHITECTURE.md#capabilities-and-encryption"}
	for _, a := range Atomic {
		s.Members = append(s.Members, a.ID())
	}
	return s
}()

// Builtin returns the capabilities every sublog node supports.
func Builtin() *Set {
	s := &Set{}
	for _, a := range Atomic {
		s.Add(a)
	}
	s.Add(CoreV1)
	return s
}
