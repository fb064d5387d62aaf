package caps

// Role specs: what a running instance (`sublog up`) does for others. A node
// publishes the cap IDs of the roles it runs in its profile card (`roles`),
// so peers choose nodes by capability. Like the built-in specs their bytes
// are frozen: a change is a new cap ID. They are not members of sublog-core
// (a node supports reading cards without running any role).

func roleSpec(name, purpose, behavior string) Spec {
	return Spec{
		Schema: SchemaV1, Name: "role-" + name, Semver: "1.0.0",
		Purpose: purpose, Behavior: behavior,
		DocsURI: "ARCHITECTURE.md#the-instance",
	}
}

// The roles of DESIGN §7.
var (
	RoleHost = roleSpec("host",
		"role host: runs WASM peers under this node's own live grant cards",
		"peers stay instantiated while the instance runs; a revoke, expiry or crl entry of the grant stops the peer as soon as it is stored")
	RoleService = roleSpec("service",
		"role service: reconciles its owner's services across the hosts that granted them",
		"placements are cards written by the owner or a delegated device; hosts act only on authorised placements backed by their own grants")
	RoleSignal = roleSpec("signal",
		"role signal: relays PKARR packets and publishes to the DHT for others (serves strangers; opt-in)",
		"stores only signed packets that verify; bounded by key count and put rate")
	RoleRelay = roleSpec("relay",
		"role relay: blind data relay between two peers that both connect out to it (serves strangers; opt-in)",
		"forwards opaque channel traffic; learns neither identity; reservations, circuits, bytes and lifetime bounded")
	RoleProxy = roleSpec("proxy",
		"role proxy: gives existing local TCP services a peer identity and exposes them to entitled peers",
		"a consumer connects to the identity and gets a local port")
)

// Roles are the role specs by role name, in the order of DESIGN §7.
var Roles = []struct {
	Name string
	Spec Spec
	// Strangers: the role serves parties that are on none of the home's
	// lists, so it is off unless asked for.
	Strangers bool
}{
	{"host", RoleHost, false},
	{"service", RoleService, false},
	{"signal", RoleSignal, true},
	{"relay", RoleRelay, true},
	{"proxy", RoleProxy, false},
}
