package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runAt runs the command line in home with the clock at at.
func runAt(t *testing.T, home string, at time.Time, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
		if k == "SUBLOG_HOME" {
			return home
		}
		return ""
	}, now: func() time.Time { return at }, rand: rand.Reader, cwd: t.TempDir(), ctx: context.Background()}
	code := a.main(args)
	return out.String(), errb.String(), code
}

var tokenRE = regexp.MustCompile(`sublog pair (sublog-pair1\.[A-Za-z0-9_-]+)`)

// The device refuses a token that is expired, tampered with, or for
// another device, and pairs with a good one exactly once.
func TestPairRefusesBadTokens(t *testing.T) {
	dir := t.TempDir()
	owner := &cliEnv{t: t, home: dir + "/owner"}
	dev := &cliEnv{t: t, home: dir + "/dev"}
	other := &cliEnv{t: t, home: dir + "/other"}
	ownerID := owner.ok("", "init")
	devID := dev.ok("", "init")
	other.ok("", "init")
	out := owner.ok("", "delegate", devID, "--token-ttl", "1h")
	m := tokenRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no token in %q", out)
	}
	tok := m[1]

	// Expired: the device's clock is past the token's hour.
	if _, errs, code := runAt(t, dev.home, time.Now().Add(2*time.Hour), "pair", tok); code != 1 || !strings.Contains(errs, "expired at") {
		t.Fatalf("expired token: exit %d: %s", code, errs)
	}
	// Tampered: one byte of the signature changed.
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, "sublog-pair1."))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-5] ^= 0x40
	forged := "sublog-pair1." + base64.RawURLEncoding.EncodeToString(raw)
	if _, errs, code := dev.run("", "pair", forged); code != 1 || !strings.Contains(errs, "is not signed by "+ownerID) {
		t.Fatalf("forged token: exit %d: %s", code, errs)
	}
	// For another device.
	if _, errs, code := other.run("", "pair", tok); code != 1 || !strings.Contains(errs, "another device") {
		t.Fatalf("wrong device: exit %d: %s", code, errs)
	}
	// Nothing was recorded by the refusals.
	if got := dev.ok("", "pair"); got != "" {
		t.Fatalf("pairings after refusals: %q", got)
	}
	if got := dev.ok("", "pair", tok); !strings.HasPrefix(got, "paired: "+devID+" is a device of "+ownerID) {
		t.Fatalf("pair: %q", got)
	}
	if got := dev.ok("", "pair", tok); !strings.HasPrefix(got, "already paired") {
		t.Fatalf("pair again: %q", got)
	}
	// The owner cannot delegate to a device it revoked: a revoked identity stays revoked.
	owner.ok("", "undelegate", devID)
	if _, errs, code := owner.run("", "delegate", devID); code != 1 || !strings.Contains(errs, "stays revoked") {
		t.Fatalf("delegate after undelegate: exit %d: %s", code, errs)
	}
}
