package kinds

import (
	"strings"
	"testing"

	"github.com/sublog/sublog/log/key"
)

func TestGrantValidate(t *testing.T) {
	sk, err := key.FromSeed(key.DeriveSeed([]byte("kinds"), "peer"))
	if err != nil {
		t.Fatal(err)
	}
	peer := sk.ID().Bytes()
	bundle := make([]byte, HashSize)
	for _, ok := range []GrantBody{
		{Peer: peer},
		{Bundle: bundle, Caps: []string{CapReq, CapKV}},
		{Service: "web", Owner: peer, Limits: Limits{Memory: PageSize, Instances: MaxInstances}, Expires: 1},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v refused: %v", ok, err)
		}
	}
	badKey := make([]byte, key.IDSize) // the all-zero point has small order
	cases := []struct {
		g    GrantBody
		want string
	}{
		{GrantBody{}, "names a peer, a bundle or a service"},
		{GrantBody{Peer: peer[:31]}, "peer"},
		{GrantBody{Peer: badKey}, "peer"},
		{GrantBody{Service: "web", Owner: []byte{1}}, "owner"},
		{GrantBody{Bundle: bundle[:31]}, "bundle hash of 31 bytes"},
		{GrantBody{Peer: peer, Caps: []string{"net"}}, `unknown cap "net"`},
		{GrantBody{Peer: peer, Expires: -1}, "negative expiry"},
		{GrantBody{Peer: peer, Limits: Limits{Memory: PageSize - 1}}, "under one 64 KiB page"},
		{GrantBody{Peer: peer, Limits: Limits{Memory: MaxMemory + 1}}, "over the 4 GiB"},
		{GrantBody{Peer: peer, Limits: Limits{Instances: MaxInstances + 1}}, "instances"},
		{GrantBody{Peer: peer, Limits: Limits{CPUTotalMS: MaxCPUMillis + 1}}, "cpu over"},
	}
	for _, c := range cases {
		err := c.g.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.g, err, c.want)
		}
	}
}
