package home

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestInitOpenIdentities(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	h, sk, err := Init(dir, "", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("home mode %v", st.Mode().Perm())
	}
	kst, _ := os.Stat(filepath.Join(dir, "keys", "default.key"))
	if kst.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", kst.Mode().Perm())
	}
	if _, _, err := Init(dir, "", rand.Reader); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	_, work, err := Init(dir, "work", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	def, err := h2.Identity("")
	if err != nil || def.ID() != sk.ID() {
		t.Fatalf("default: %v", err)
	}
	ids, err := h2.Identities()
	if err != nil || len(ids) != 2 || ids[0].Name != "default" || !ids[0].Default || ids[1].ID != work.ID() {
		t.Fatalf("%+v %v", ids, err)
	}
	if _, err := h.Identity("nope"); !errors.Is(err, ErrNoID) {
		t.Fatal(err)
	}
	if _, err := h.Identity("../keys/default"); !errors.Is(err, ErrBadName) {
		t.Fatal(err)
	}
}

func TestOpenMissingHome(t *testing.T) {
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNoHome) {
		t.Fatal(err)
	}
}

func TestKeyFilePermissionsAndFormat(t *testing.T) {
	dir := t.TempDir()
	h, _, err := Init(dir, "", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "keys", "default.key")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Identity(""); !errors.Is(err, ErrKeyPerms) {
		t.Fatalf("world-readable key loaded: %v", err)
	}
	good, _ := os.ReadFile(p)
	for _, bad := range [][]byte{
		nil,
		good[:len(good)-1], // no newline
		append(bytes.ToUpper(good[:0]), good...)[:len(good)-2], // short
		bytes.Replace(good, []byte("v1"), []byte("v2"), 1),
		append(append([]byte(nil), good...), '\n'),
		bytes.ToUpper(good),
	} {
		if _, err := ParseKeyFile(bad); !errors.Is(err, ErrKeyFile) {
			t.Errorf("accepted %q: %v", bad, err)
		}
	}
	if _, err := ParseKeyFile(good); err != nil {
		t.Fatal(err)
	}
}

func TestLocate(t *testing.T) {
	env := map[string]string{"HOME": "/home/u"}
	get := func(k string) string { return env[k] }
	if d, _ := Locate("", get); d != "/home/u/.local/share/sublog" {
		t.Fatal(d)
	}
	env["XDG_DATA_HOME"] = "/x"
	if d, _ := Locate("", get); d != "/x/sublog" {
		t.Fatal(d)
	}
	env["SUBLOG_HOME"] = "/s"
	if d, _ := Locate("", get); d != "/s" {
		t.Fatal(d)
	}
	if d, _ := Locate("/f", get); d != "/f" {
		t.Fatal(d)
	}
}
